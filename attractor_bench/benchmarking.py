"""`benchmark`: the named protocol applied to one model, in the spirit of RobustBench's `benchmark`.

The suite is generated from the protocol's own suite document (`protocol.PROTOCOL.suite`): its attacks,
seed, cascade and OOD sets as they are, its models replaced by the one under test (plus the models its
transfer attacks take their examples from: `mlp`, which the zoo serves), `n` images if asked. The run is
`runner.run_suite` and `report.write_results` as for any suite, then the protocol's OOD part (its OOD suite's
sets and score attacks on the model under test: `ood.evaluate.run_ood`, `<suite>_ood/`); beside them, `MODEL_CARD.md` says what was
evaluated, the weights' hash, the numbers with their intervals, the verdict, the environment and whether the
run satisfies the protocol, and `placement` sets the row among the committed leaderboard's rows.

>>> from attractor_bench import benchmark
>>> card = benchmark("tiny_plugins:small_mlp", n=100)          # an outside builder (module:callable)
>>> card = benchmark(my_trained_module, name="mine")           # a torch module
>>> card = benchmark("attractor_at_01_long")                   # a zoo model
"""

from __future__ import annotations

import copy
import dataclasses
import json
import tempfile
from pathlib import Path

import torch

from . import leaderboard, protocol, suitefile
from .attacks import ATTACKS
from .config import ModelSpec, Suite, parse_suite
from .errors import ConfigError
from .ood.evaluate import run_ood
from .ood.report import META as OOD_META
from .ood.report import write_ood
from .ood.suite import VALIDATION_MAX, OODSuite, load_ood_suite
from .report import git_commit, now, write_results
from .runner import run_suite
from .tables import pct

CARD = "MODEL_CARD.md"


def _given(module: torch.nn.Module):
    def given_module(train, val, seed: int) -> torch.nn.Module:
        """The torch module handed to `benchmark` (already trained)."""
        return module
    return given_module


def protocol_suite(model, name: str, defence: dict | None, threshold: float | None, n: int | None,
                   p: protocol.Protocol = protocol.PROTOCOL, params: dict | None = None) -> Suite:
    """The protocol's suite with `model` (a leaderboard name, a 'module:callable' builder or a torch module)
    as its model under test, behind `defence` (a suite's defence mapping; default: its own, else none)."""
    path = protocol.ROOT / p.suite
    doc = copy.deepcopy(suitefile.read(path))
    ranked = protocol.leaderboard_models()
    sources = {a.get("source") for a in doc["attacks"] if a.get("source")}
    if name in sources:
        raise ConfigError(f"name {name!r} is a transfer source of the protocol; pick another --name.")
    if isinstance(model, str) and model in ranked and name == model:  # a ranked model: its own spec and defence
        own = suitefile.read(ranked[model][0].path)
        entry = copy.deepcopy(own["models"][model])
        entry.setdefault("defence", own.get("defence") or {"name": "attractor"})
    else:
        entry = {"preset": model if isinstance(model, str) else "mlp", **({"params": params} if params else {}),
                 "defence": {"name": "none"}}
    if defence is not None:
        entry["defence"] = defence
    doc["models"] = {name: entry, **{s: doc["models"][s] for s in sorted(sources)}}
    if n is not None:
        doc["data"] = {**doc.get("data", {}), "n_test": n, "n_ood": n}
    if threshold is not None:
        doc["rejector"] = {"threshold": threshold}
    doc["name"] = f"benchmark_{name}"
    where = path.with_name(f"benchmark_{name}.yaml")
    plain = {**doc, "attacks": [a for a in doc["attacks"] if not (a["name"] in ATTACKS and ATTACKS[a["name"]].needs_rejector)]}
    suite = parse_suite(plain, where)  # the protocol's attacks on the classifier alone
    if suite.models[0].defence.may_reject:  # a defence that may bring a rejector: the attacks on it too
        suite = parse_suite(doc, where)
    if isinstance(model, torch.nn.Module):  # not nameable in a suite file: its builder returns it
        spec = suite.models[0]
        given = ModelSpec(name, f"python:{type(model).__name__}", None, spec.defence, _given(model.eval()), {},
                          f"python object {type(model).__module__}.{type(model).__qualname__}")
        suite = dataclasses.replace(suite, models=(given, *suite.models[1:]))
    return suite


def protocol_ood_suite(suite: Suite, n: int | None, p: protocol.Protocol = protocol.PROTOCOL) -> OODSuite:
    """The protocol's OOD part (its OOD suite's sets, score attacks, budgets, cross-check and seed) on the model
    under test (`suite`'s first model), on `n` images of each set if asked."""
    part = load_ood_suite(protocol.ROOT / p.ood_suite)
    sizes = {} if n is None else {"n_test": n, "n_ood": n, "n_validation": max(1, min(n // 4, VALIDATION_MAX))}
    return dataclasses.replace(part, name=f"{suite.name}_ood", suites=(dataclasses.replace(suite, models=suite.models[:1]),),
                               **sizes)


PLACED = ("clean", "worst_case_0.1", "worst_case_0.3", "ood_robust_lowest")  # the numbers the placement shows


def placement(name: str, folders: list[Path], committed: Path) -> list[dict]:
    """The committed leaderboard's rows (the runs under `committed` evaluated under the leaderboard's protocol) and
    model `name`'s row from the benchmark's `folders`, ranked together by the leaderboard's own rule
    (`leaderboard.rank`: paired tests on the images two rows share), in rank order; the new row says `new`."""
    board = leaderboard.build(committed, protocol.PROTOCOL.label).rows if committed.is_dir() else []
    with tempfile.TemporaryDirectory() as tmp:
        for f in folders:
            (Path(tmp) / f.name).symlink_to(f.resolve(), target_is_directory=True)
        mine = [r for r in leaderboard.build(tmp, None).rows if r.display == name]  # not the protocol's transfer source
    new = {id(r) for r in mine}
    return [{"model": r.display, "rank": r.rank, "new": id(r) in new, **{k: r.v(k) for k in PLACED}}
            for r in leaderboard.rank(board + mine)]


def _numbers(summary: dict, name: str) -> dict:
    m = next(m for m in summary["models"] if m["name"] == name)
    out = {"clean": m["clean"]["accuracy"], "clean_interval": m["clean"].get("interval"), "n": m["clean"]["n"],
           "verdict": m["verdict"], "worst_case": [w for w in m["worst_case"] if not w.get("all_images")]}
    for eps in (0.1, 0.3):
        w = next((w for w in out["worst_case"] if w["norm"] == "linf" and abs(w["eps"] - eps) < 1e-9), None)
        out[f"worst_case_{eps:g}"] = None if w is None else w["accuracy"]
    return out


def _interval(iv) -> str:
    return "" if not iv else f" [{pct(iv[0])}, {pct(iv[1])}]"


def _ood_numbers(doc: dict, ood_folder: Path, name: str) -> dict:
    """The OOD part's numbers of model `name` (its ood.json `doc`): the best rejector (chosen on validation images),
    per set its clean and robust AUROC at the first eps, the lowest robust AUROC."""
    best = doc["best_rejector"][name]
    sets = doc["auroc"]["models"][name][best]
    return {"ood_rejector": best, "ood_eps": doc["auroc"]["eps"], "ood_folder": str(ood_folder),
            "ood_sets": {d: {"clean": v["clean"], "robust": v["robust"]} for d, v in sets.items()},
            "ood_robust_lowest": min(v["robust"] for v in sets.values())}


def _ood_lines(o: dict, doc: dict, label: str | None) -> list[str]:
    lines = ["", f"## OOD detection under attack ({label or 'a custom evaluation of the OOD part'})", "",
             f"Best rejector `{o['ood_rejector']}` (chosen on validation images, none of them a test image); AUROC, "
             f"outlier scores, OOD positive; robust: the worst over {', '.join(doc['attacks'])} on the score at L-inf "
             f"{o['ood_eps']:g}, in-distribution and OOD images attacked together; {doc['n_images']['mnist']} MNIST test "
             f"images against each set; `{Path(o['ood_folder']).name}/README.md` has every rejector and attack.", "",
             "| OOD set | clean AUROC | robust AUROC |", "|---|---|---|"]
    lines += [f"| {d} | {v['clean']:.4f} | {v['robust']:.4f} |" for d, v in o["ood_sets"].items()]
    return lines + ["", f"Lowest robust AUROC: {o['ood_robust_lowest']:.4f}.", ""]


def model_card(folder: Path, ood_folder: Path, name: str, model_ref: str,
               p: protocol.Protocol = protocol.PROTOCOL) -> dict:
    """Write MODEL_CARD.md into the run's folder from its summary.json and run.json and the OOD part's ood.json in
    `ood_folder`; return the card's data. The card names the protocol only if both parts were its evaluation."""
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    info, nums = meta["models"][name], _numbers(summary, name)
    label = protocol.satisfied(meta, name, meta["models"][name].get("threshold") is not None, p)
    ood_doc = json.loads((ood_folder / OOD_META).read_text(encoding="utf-8"))
    ood, ood_label = _ood_numbers(ood_doc, ood_folder, name), protocol.ood_satisfied(ood_doc, p)
    label = label if ood_label == label else None
    env = meta.get("environment") or meta.get("versions") or {}
    lines = [f"# Model card: `{name}`", "",
             f"- evaluated: `{model_ref}`, defence `{info['defence']['name']}` {info['defence']['params'] or ''}".rstrip(),
             f"- weights (attractor_bench.files.weights_fingerprint): `{info['weights']}`"
             + (f"; defence networks: {', '.join(info['defence']['weights'])}" if info["defence"]["weights"] else ""),
             f"- protocol: {label or 'custom evaluation (not the protocol ' + p.label + ': other images or attacks)'}",
             f"- images: {nums['n']} MNIST test images; command: `{meta.get('command')}`; {meta.get('date')}, commit {meta.get('commit')}",
             f"- environment: {', '.join(f'{k} {v}' for k, v in env.items())}", "",
             "| | accuracy [95% CI] | attacks |", "|---|---|---|",
             f"| clean | {pct(nums['clean'])}{_interval(nums['clean_interval'])} | |"]
    lines += [f"| worst case {w['norm']} {w['eps']:g} | {pct(w['accuracy'])}{_interval(w.get('interval'))} | "
              f"{', '.join(w['attacks'])} |" for w in nums["worst_case"]]
    v = nums["verdict"]
    verdict = "not checked" if v["potentially_unreliable"] is None else (
        "potentially unreliable: " + "; ".join(v["reasons"]) if v["potentially_unreliable"] else "reliable")
    lines += ["", f"Verdict: {verdict}.", "", *_ood_lines(ood, ood_doc, ood_label)]
    (folder / CARD).write_text("\n".join(lines), encoding="utf-8")
    return {"name": name, "protocol": label, "weights": info["weights"], "folder": str(folder), **nums, **ood}


def benchmark(model, name: str | None = None, defence: dict | None = None, threshold: float | None = None,
              n: int | None = None, device: str | None = None, results_dir: str | Path = "results/benchmark",
              data_root=None, cache_dir=None, download: bool = True, params: dict | None = None,
              progress: bool = False, p: protocol.Protocol = protocol.PROTOCOL, command: str | None = None) -> dict:
    """Run protocol `p` on `model` and write its results folder with MODEL_CARD.md under `results_dir`;
    return the card's data with `placement` (the committed leaderboard's rows and this one, in order)."""
    name = name or (model if isinstance(model, str) and ":" not in model else "submitted")
    suite = protocol_suite(model, name, defence, threshold, n, p, params)
    ood_suite = protocol_ood_suite(suite, n, p)
    common = dict(data_root=data_root, cache_dir=cache_dir, download=download, progress=progress, device=device)
    result = run_suite(suite, **common)
    ref = model if isinstance(model, str) else suite.models[0].origin
    command = command or f"attractor_bench.benchmark({ref!r}, n={n})"
    folder = write_results(result, results_dir, command)
    ood = run_ood(ood_suite, **common)  # the model is in the cache now: the OOD part trains nothing
    ood_folder = write_ood(ood, Path(results_dir) / ood_suite.name, command, git_commit(), now())
    card = model_card(folder, ood_folder, name, ref, p)
    card["placement"] = placement(name, [folder, ood_folder], protocol.ROOT / "results")
    return card
