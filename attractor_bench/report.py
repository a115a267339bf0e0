"""Result files of a run, under `<results_dir>/<suite name>/`:

- `results.csv`: the tidy table, one row per (model, attack, eps, dataset, metric);
- `README.md`: the same numbers as readable tables, the command, seed, choices and versions;
- `run.json`: run metadata (model configurations, training histories, thresholds, versions);
- `suite.yaml`: a copy of the suite file the run ran (`attractor-bench report` re-renders from it).

Files are written to a temporary folder first and moved into place only when all are written,
so an interrupted run leaves the previous results untouched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .config import Suite, load_suite, paper_attack, parse_suite
from .data import DISPLAY_NAMES
from .defenses import DESCRIPTIONS
from .files import inside, replace_folder, write_text
from .plugins import BUILT_IN
from .tables import fmt_eps, markdown, pct
from . import flags, plots, suitefile
from .paper import GOALS, PAPER
from .result import COLUMNS, RunResult
from .summary import interval, read_table, rebuild as rebuild_summary
from .errors import AttractorBenchError
from .indicators import PROBE_IMAGES
from .provenance import environment



def now() -> str:
    """The time a run's files are stamped with (UTC, to the minute)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


_TARGETS = {
    "network": "on the undefended single pass of the model's network (a surrogate for the defended classifier)",
    "pipeline": "on the defended classifier, gradients through the whole pipeline (the attractor models: through the "
                "unrolled fixed-point iteration; purifiers: as the Choices above say for each)",
    "bpda": "on the defended classifier, straight-through (BPDA) gradients through the defence",
    "transfer": "transfer: made on model `{source}`'s network (single pass), applied to the defended classifier",
}


def _defence_text(spec) -> str:
    """The defence in words: a built-in one describes itself (defenses.DESCRIPTIONS), any other by its parameters."""
    if spec.origin == BUILT_IN and spec.name in DESCRIPTIONS:
        return DESCRIPTIONS[spec.name](spec.params)
    return (f"`{spec.name}` ({spec.origin}), parameters {spec.params or {}}; `bpda` attacks see it as the identity in the "
            "backward pass.")


def _vs_goal(v: float | None, goal: float) -> str:
    return "n/a" if v is None else "met" if 100 * v >= goal else f"{goal - 100 * v:.2f} short"


_lookup: tuple[pd.DataFrame, int, dict] | None = None  # the last table's index: the renderers read one table thousands of times


def table_value(t: pd.DataFrame, model: str, attack: str, eps: float, ds: str, metric: str) -> float | None:
    """The first value of `t` (a results.csv table) for the model, attack, dataset and metric at an eps close to
    `eps` (numpy's `isclose`: results.csv holds eps to a few digits), else None."""
    global _lookup
    if _lookup is None or _lookup[0] is not t or _lookup[1] != len(t):
        index: dict = {}
        for m, a, e, d, k, v in zip(t.model, t.attack, t.eps, t.dataset, t.metric, t.value):
            index.setdefault((m, a, d, k), []).append((float(e), float(v)))
        _lookup = (t, len(t), index)
    return next((v for e, v in _lookup[2].get((model, attack, ds, metric), ())
                 if abs(e - eps) <= 1e-8 + 1e-5 * abs(eps)), None)


def render_readme(result: RunResult, command: str) -> str:
    s, meta = result.suite, result.meta
    parts = [f"# Results: `{s.name}`", "",
             f"Produced by `{command}` (suite `{s.path}`, seed {s.seed}) on {meta['date']}, "
             f"commit `{meta.get('commit') or 'unknown'}`, in {meta['wall_seconds']:.0f} s{_resumed(meta)}. "
             "`results.csv` holds every number below (fractions; shown here in percent), `run.json` the run's metadata.", ""]
    for section in (_choices, _model_lines, _paper_sections, _robustness_sections, _details, _times, _figures_and_versions):
        parts += section(result)
    return "\n".join(parts)


def _choices(result: RunResult) -> list[str]:
    """The defences, rejector, labels and attacks the run used."""
    s = result.suite
    parts = []
    defences = {}
    for m in s.models:
        defences.setdefault((m.defence.name, m.defence.origin, json.dumps(m.defence.params, sort_keys=True)), []).append(m.name)
    parts += ["## Choices", "",
              *[f"- Defence of {', '.join(f'`{n}`' for n in names)}: {_defence_text(spec)}"
                for spec, names in ((next(m.defence for m in s.models if m.name == names[0]), names)
                                    for names in defences.values())],
              "- Rejector (models with the attractor defence): Pearson similarity between the input and its fixed point, "
              + (f"threshold T = {s.rejector.threshold:g}." if s.rejector.target_tpr is None else
                 f"threshold calibrated to accept {s.rejector.target_tpr:.0%} of the MNIST validation split."),
              "- `accuracy`: prediction of the defended classifier (the attractor models: the head after the fixed-point "
              "iteration; the others: the model after its defence); `single pass`: the network without its defence. "
              "OOD metrics treat MNIST (ID) as the positive class; recall = share of MNIST accepted.",
              "- Labels: the true labels on MNIST; on OOD sets the attacked classifier's own predictions (ART's default).",
              "- Rejection off: `accuracy`. Rejection on: `end-to-end` = accepted and correct, `rejected`, "
              "`accepted & wrong` (the attacker's win).",
              "- Attacks (`autoattack_standard` is the authors' standard AutoAttack, comparable with published figures; `autoattack_art` is ART's ensemble, which is not):",
              *[f"  - `{a.label}`: {a.entry.description}; {a.norm} eps {', '.join(fmt_eps(e, a.norm) for e in a.eps)}; "
                f"{_TARGETS[a.target.value].format(source=a.source)}; "
                + ("differentiating each model's training cost (`loss: training`; cross-entropy for models trained "
                   "on it alone); " if a.loss == "training" else "")
                + ("minimal-perturbation attack run once, counted at each eps only where its perturbation is within eps; "
                   if not a.entry.bounded else "")
                + (f"on a fixed seeded subset of {a.n} images per dataset" if a.n else "on all images")
                + (" (on MNIST in the worst-case cascade: only the images every cheaper attack at that eps left correct); "
                   if s.cascades(a) else "; ")
                + ("MNIST and the OOD sets" if a.ood else "MNIST only")
                + (f"; parameters {a.params}" if a.params else "") + "." for a in s.attacks],
              ""]
    return parts


def _randomized(meta: dict) -> str:
    """How a randomized model's images were judged: the majority of 21 draws since component `cell`
    v2 (issue 38; `cells.judged`), one draw per cell before."""
    if (meta.get("components") or {}).get("cell", 1) >= 2:
        return ", randomized (each image judged by the majority of 21 draws, the same in every cell; gradients are EoT means)"
    return ", randomized (single draws predict; gradients are EoT means)"


def _model_lines(result: RunResult) -> list[str]:
    """One line per model: how it was trained or where it comes from."""
    meta = result.meta
    parts = []
    for name, m in meta["models"].items():
        if "config" not in m:  # a comparison model (trained here) or an outside model
            if "history" in m:
                h = m["history"]["train"]
                how = (f"built-in comparison model, trained {'earlier (from the cache)' if m.get('from_cache') else 'in this run'}"
                       f" in {m.get('train_seconds')} s; best epoch {h['best_epoch']} of {h['epochs']} by validation "
                       f"{h.get('val_metric', 'loss')}"
                       + (f" {100 * h['best_val_accuracy']:.2f}%" if "best_val_accuracy" in h else ""))
            else:
                how = m.get("origin", "outside")
            parts.append(f"- Model `{name}`: `{m['preset']}` ({how}), parameters {m.get('params') or {}}"
                         + (_randomized(meta) if m.get("randomized") else "")
                         + f", weights fingerprint `{m.get('weights', '?')[:12]}`.")
            continue
        c = m["config"]
        h = m["history"]
        parts.append(f"- Model `{name}` (preset `{m['preset']}`): weights a = {tuple(c['weights'])}, n_train = {c['n_train']}, "
                     f"output activation {c['output_activation']}, L_rec {c['rec_reduction']}, L_eigen {c['penalty']}, "
                     + ("no rejector" if m.get("threshold") is None else f"threshold used {m['threshold']:.4f}") + "; best epoch / epochs run per stage: "
                     + ", ".join(f"{k} {v['best_epoch']}/{v['epochs']} (val acc {v['best_val_accuracy']:.2%})" for k, v in h.items()) + ".")
    parts.append("")
    return parts


def _paper_sections(result: RunResult) -> list[str]:
    """Beside the paper's numbers, and the full-data attractor against its goals (`reference: paper`)."""
    s, t = result.suite, result.table
    parts = []
    if s.reference == "paper":
        d = s.defence.params
        fgsm, rows = paper_attack(s.attacks), []
        for spec in s.models:  # matched on the preset, whatever the model is called in the suite
            for (preset, eps, ds, metric), ref in PAPER.items():
                if preset != spec.preset:
                    continue
                attack = "none" if eps == 0 else fgsm.label
                ours = table_value(t, spec.name, attack, eps, ds, metric)
                single = table_value(t, spec.name, attack, eps, ds, f"{metric}_single_pass")
                if ours is not None:
                    rows.append([spec.name, fmt_eps(eps), "MNIST" if ds == "mnist" else f"MNIST vs {DISPLAY_NAMES[ds]}", metric,
                                 f"{ref:.2f}", pct(ours), f"{100 * ours - ref:+.2f}",
                                 pct(single), "n/a" if single is None else f"{100 * single - ref:+.2f}"])
        parts += ["## Beside the paper", "",
                  f"Paper: Alipour & SeyyedSalehi, Tables 1-2 and section 3.2, in percent. Ours: attack `{fgsm.label}` "
                  "(FGSM on the network's single pass); *iterated* = classified and scored at G^n(x) after the defence's "
                  f"iterations (the paper's test-time procedure; here at most {d.get('max_iter', 'n/a')}, see Choices), "
                  "*one pass* = classified from x and scored by Pearson(G(x), x).", "",
                  markdown(["model", "eps", "data", "metric", "paper", "ours, iterated", "diff", "ours, one pass", "diff"], rows), "",
                  "Where and why these differ from the paper, as far as is known, is written up in the project's "
                  "docs/results.md and in [ABLATION.md](ABLATION.md) (experiments on the validation split).", ""]
        full = [m.name for m in s.models if m.preset == "attractor_full"]
        paper_attractor = next((m.name for m in s.models if m.preset == "attractor"), None)
        if full:
            rows = []
            for name in full:
                for (eps, ds, metric), goal in GOALS.items():
                    attack = "none" if eps == 0 else fgsm.label
                    ours = table_value(t, name, attack, eps, ds, metric)
                    single = table_value(t, name, attack, eps, ds, f"{metric}_single_pass")
                    if ours is None:
                        continue
                    ref = PAPER.get(("attractor", eps, ds, metric))
                    theirs = table_value(t, paper_attractor, attack, eps, ds, metric) if paper_attractor else None
                    rows.append([name, fmt_eps(eps), "MNIST" if ds == "mnist" else f"MNIST vs {DISPLAY_NAMES[ds]}", metric,
                                 f">= {goal:g}", pct(ours), _vs_goal(ours, goal), pct(single), _vs_goal(single, goal),
                                 "n/a" if ref is None else f"{ref:.2f}", pct(theirs)])
            parts += ["## The full-data attractor against its goals", "",
                      "Preset `attractor_full`: the attractor loss on all 50,000 training images with the estimated "
                      "L_eigen, fine-tuned from the baseline. Goals (lower bounds, percent) beside the paper's "
                      f"1,000-sample attractor (paper) and ours (`{paper_attractor}`, iterated).", "",
                      markdown(["model", "eps", "data", "metric", "goal", "ours, iterated", "vs goal", "ours, one pass", "vs goal",
                           "paper's attractor", f"`{paper_attractor}`"], rows), ""]
    return parts


def _detection_columns(t: pd.DataFrame) -> dict[str, str]:
    """The OOD detection columns of the details: pytorch-ood's names (attractor_bench.metrics), or for a
    table written before them (`ood_auroc`, issue 37) its own, so that its README re-renders as it was."""
    auroc = "ood_AUROC" if (t.metric == "ood_AUROC").any() or not (t.metric == "ood_auroc").any() else "ood_auroc"
    fpr = {"ood_FPR95TPR": "FPR95TPR"} if auroc == "ood_AUROC" else {}
    return {"ood_accuracy": "acc", "ood_precision": "prec", "ood_recall": "rec", auroc: "AUROC", **fpr,
            "ood_accuracy_single_pass": "acc 1 pass", f"{auroc}_single_pass": "AUROC 1 pass"}


def _details(result: RunResult) -> list[str]:
    """Every metric per attack and eps, MNIST and each OOD set; accuracies with their 95% interval."""
    s, t, n_clean = result.suite, result.table, _clean_images(result)
    models = [m.name for m in s.models]
    parts = []
    parts += ["## Details per attack", ""]
    for a in s.attacks:
        grid = [0.0] + list(a.eps)
        cols = {"accuracy": "accuracy", "accuracy_single_pass": "acc. 1 pass", "accepted": "accepted",
                "accepted_single_pass": "accepted 1 pass", "end_to_end_accuracy": "end-to-end", "mean_iterations": "iterations"}
        header = ["eps"] + [f"{m} {k}" for m in models for k in cols.values()]
        rows = []
        for e in grid:
            att = "none" if e == 0 else a.label
            rows.append([fmt_eps(e, a.norm)] + [_detail(t, m, att, e, k, n_clean) for m in models for k in cols])
        parts += [f"### MNIST test accuracy under `{a.label}`", "", markdown(header, rows), ""]
        for ds in (s.data.ood if a.ood else []):
            cols = _detection_columns(t)
            header = ["eps"] + [f"{m} {k}" for m in models for k in cols.values()]
            rows = []
            for e in grid:
                att = "none" if e == 0 else a.label
                rows.append([fmt_eps(e, a.norm)] + [pct(table_value(t, m, att, e, ds, k)) for m in models for k in cols])
            parts += [f"#### OOD detection, MNIST vs {DISPLAY_NAMES[ds]}, under `{a.label}` (both attacked)", "", markdown(header, rows), ""]
    return parts


def _times(result: RunResult) -> list[str]:
    """Training and attack wall times."""
    s, meta = result.suite, result.meta
    models = [m.name for m in s.models]
    parts = []
    cells = pd.DataFrame(meta["cell_seconds"])
    if len(cells):
        def trained(m: dict) -> str:
            return "unknown" if m.get("train_seconds") is None else f"{m['train_seconds']:.0f}"

        stored = cells.stored if "stored" in cells else pd.Series(False, index=cells.index)
        rows = [[m, trained(meta["models"][m]), "yes" if meta["models"][m].get("from_cache") else "no",
                 f"{cells[cells.model == m].seconds.sum():.0f}", str(int(stored[cells.model == m].sum()))] for m in models]
        parts += ["## Time (seconds)", "", markdown(["model", "training", "loaded from cache in this run", "attacks + evaluation, all cells",
                                                "cells taken from the store"], rows), "",
                  "A cell taken from the store (a resumed run) counts with the time it took when it was computed.", ""]
        labels = ["none"] + [a.label for a in s.attacks]
        rows = [[f"`{lab}`" if lab != "none" else "clean evaluation"]
                + [f"{cells[(cells.model == m) & (cells.attack == lab)].seconds.sum():.0f}" for m in models]
                + [f"{cells[cells.attack == lab].seconds.sum():.0f}"] for lab in labels]
        parts += ["Wall time per attack (all its eps and datasets; attack and evaluation):", "",
                  markdown(["attack"] + [f"`{m}`" for m in models] + ["all models"], rows), "",
                  "Per-cell times are in `run.json` (`cell_seconds`).", ""]
    return parts


def _figures_and_versions(result: RunResult) -> list[str]:
    """The figures with their captions, and the library versions."""
    meta = result.meta
    parts = []
    if meta.get("figures"):
        parts += ["## Figures", ""]
        for f in meta["figures"]:
            parts += [f"{f['caption']}", "", f"![{f['file']}]({f['file']})", ""]
    parts += ["## Versions", "", markdown(["package", "version"], [[k, v] for k, v in meta["versions"].items()]), ""]
    return parts


def _robustness_sections(result: RunResult) -> list[str]:
    """Worst case, sanity flags, accuracy per attack and eps (rejection off and on), OOD acceptance."""
    s, t, meta = result.suite, result.table, result.meta
    parts = ["## Robustness: worst case per sample and the reliability verdict", "",
             "Worst case: an image counts as robust only if it is classified correctly clean and under every attack of "
             "that norm at that eps (`robustness.py` has the exact rules). Attacks on subsets are nested; the worst case "
             "is taken on the images every attack saw (n). Accuracy is of the defended classifier (after its defence): under attack "
             "the robust accuracy (RobustBench's name), in the clean row the clean accuracy; cells read `accuracy [95% "
             "Clopper-Pearson interval] / end-to-end`.", ""]
    if s.worst_case == "cascade":
        parts += ["Worst case by cascade (`worst_case: cascade`, as AutoAttack runs its attacks): at each eps the attacks "
                  "marked *cascade* below run in order of cost (the registry's `cost`), each only on the images that "
                  "every earlier attack and every attack on all images failed on; a cascading attack's row is the robust "
                  "accuracy after the cascade up to it (not its accuracy alone), and the worst case is the one every "
                  "attack on every image gives. Cascade: "
                  + ", ".join(f"`{a.label}`" for a in sorted((a for a in s.attacks if s.cascades(a)),
                                                            key=lambda a: (a.entry.cost, s.attacks.index(a))))
                  + "; on all images: " + (", ".join(f"`{a.label}`" for a in s.attacks if not s.cascades(a)) or "none")
                  + ".", ""]
    parts += _verdict_section(result)
    shares = t[(t.kind == "sanity") & t.metric.str.startswith("zero_gradient_share_")]
    if len(shares):
        parts += ["", "Share of clean images with an all-zero input gradient: "
                  + "; ".join(f"`{r.model}` {r.metric.removeprefix('zero_gradient_share_')} {pct(r.value)}%" for r in shares.itertuples()) + "."]
    parts.append("")
    n_clean = _clean_images(result)
    for norm in ("linf", "l2"):
        attacks = [a for a in s.attacks if a.norm == norm]
        for m in s.models if attacks else []:
            parts += _model_robustness(result, m.name, norm, attacks, n_clean)
    ood_attacks = [a for a in s.attacks if a.ood]
    for ds in s.data.ood if ood_attacks else []:
        grid = sorted({e for a in ood_attacks for e in a.eps})
        rows = [[f"`{m.name}`", f"`{a.label}`", pct(table_value(t, m.name, "none", 0.0, ds, "accepted"))]
                + [pct(table_value(t, m.name, a.label, e, ds, "accepted")) if e in a.eps else "" for e in grid]
                for m in s.models for a in ood_attacks
                if meta["models"].get(m.name, {}).get("threshold", 0) is not None and a.label in set(t.attack[t.model == m.name])]
        parts += [f"### {DISPLAY_NAMES[ds]} images accepted as MNIST under attack, %", "",
                  markdown(["model", "attack", "clean"] + [f"eps {fmt_eps(e)}" for e in grid], rows), ""]
    return parts


def _verdicts(meta: dict, name: str) -> dict[tuple[str, float], dict]:
    return {(v["norm"], float(v["eps"])): v for v in meta.get("verdict", {}).get(name, {}).get("by_eps", [])}


def _verdict_section(result: RunResult) -> list[str]:
    """Per model and (norm, eps), the verdict; then every raised indicator with its evidence, and
    what was checked."""
    s, meta = result.suite, result.meta
    points = sorted({(v["norm"], float(v["eps"])) for m in s.models for v in _verdicts(meta, m.name).values()})
    parts = ["### Reliability verdict", "",
             "Per (norm, eps) of the worst case: **potentially unreliable** where an attack-failure indicator was raised "
             "(attractor_bench/indicators.py; what each measures and its threshold: docs/reliability.md), else reliable. "
             "The indicators probe, per cell, a random sample of the images that are robust in the worst case (an image "
             f"some attack broke cannot be overstated; {PROBE_IMAGES} images, drawn with the cell's seed): the attack "
             "is run again with every point it asks about recorded, continued "
             "by PGD, its gradient compared with finite differences, its points shaken by noise; per model, AutoAttack's "
             "checks and PGD at eps 1; across eps, monotonicity. Where no image is robust in the worst case, nothing "
             "can be overstated and the verdict is reliable.", ""]
    if not points:
        return parts + ["No indicators were computed for this run (made before they existed).", ""]
    rows = []
    for m in s.models:
        v = _verdicts(meta, m.name)
        rows.append([f"`{m.name}`"] + [("**potentially unreliable**" if v[p]["potentially_unreliable"] else "reliable")
                                        + (f" ({v[p]['robust_images']} robust)" if v[p].get("robust_images") is not None else "")
                                        if p in v else "" for p in points])
    parts += [markdown(["model"] + [f"{'L-inf' if n == 'linf' else 'L2'} {fmt_eps(e, n)}" for n, e in points], rows), ""]
    for m in s.models:
        found = meta.get("verdict", {}).get(m.name, {}).get("findings", [])
        raised = [f for f in found if f["raised"]]
        checked = sorted({f["name"] for f in found})
        parts += [f"- `{m.name}`: checked " + ", ".join(f"`{c}`" for c in checked) + "; "
                  + (f"raised {len(raised)}:" if raised else "none raised.")]
        for f in raised:
            where = "every eps" if f["eps"] is None else f"{'L-inf' if f['norm'] == 'linf' else 'L2'} eps {fmt_eps(f['eps'], f['norm'])}"
            first = f"; first images {', '.join(map(str, f['samples']))}" if f["samples"] else ""
            parts.append(f"  - `{f['name']}` (`{f['attack']}`, {where}, {f['count']} of {f['n']}): {f['why']}{first}.")
        notes = [f for f in found if not f["raised"] and f["count"] and f["name"] in ("transfer_failure", "randomized_forward",
                                                                                  "gradient_at_inference", "fixed_point_iteration")]
        for f in notes:
            where = "" if f["eps"] is None else f", {'L-inf' if f['norm'] == 'linf' else 'L2'} eps {fmt_eps(f['eps'], f['norm'])}"
            parts.append(f"  - advisory `{f['name']}` (`{f['attack']}`{where}): {f['why']}.")
    return parts + [""]


def _model_robustness(result: RunResult, name: str, norm: str, attacks: list, n_clean: int) -> list[str]:
    """One model's accuracy per attack and eps in one norm, the worst case, what each attack spent
    and (with a rejector) the accepted-and-wrong share."""
    s, t, meta = result.suite, result.table, result.meta
    grid = sorted({e for a in attacks for e in a.eps})
    unreliable = table_value(t, name, "sanity", 0.0, "mnist", "potentially_unreliable")
    rows = [["clean", "all"] + [_cell(t, name, "none", 0.0, n_clean)] * len(grid)]
    ran = set(t.attack[t.model == name])  # an attack on the rejector skips models without one
    for a in [a for a in attacks if a.label in ran]:
        rows.append([f"`{a.label}`" + (" (cascade)" if s.cascades(a) else ""), str(a.n or "all")]
                    + [_cell(t, name, a.label, e, n_clean) if e in a.eps else "" for e in grid])
    for wc in (f"worst_case_{norm}", f"worst_case_{norm}_all_images"):
        ns = {table_value(t, name, wc, e, "mnist", "n_samples") for e in grid} - {None}
        if ns:
            rows.append([f"**{wc}**", "/".join(str(int(n)) for n in sorted(ns))] + [_cell(t, name, wc, e, n_clean) for e in grid])
    verdicts = _verdicts(meta, name)
    if verdicts:
        rows.append(["verdict", ""] + [("**potentially unreliable**" if verdicts[(norm, e)]["potentially_unreliable"] else "reliable")
                                       if (norm, e) in verdicts else "" for e in grid])
        unreliable = any(v["potentially_unreliable"] for (n, _), v in verdicts.items() if n == norm)
    eps_cols = [f"eps {fmt_eps(e, norm)}" for e in grid]
    title = f"### `{name}`, {'L-inf' if norm == 'linf' else 'L2'}" + (" — potentially unreliable" if unreliable else "")
    parts = [title, "", markdown(["attack", "n"] + eps_cols, rows), ""]
    spent = [[f"`{a.label}`"] + [_spent(t, name, a.label, e) if e in a.eps else "" for e in grid]
             for a in attacks if a.label in ran]
    if any(c for r in spent for c in r[1:]):
        parts += ["What each attack spent (images it attacked: images passed forward / backward through the attacked "
                  "classifier; transfer attacks count the source network's passes):", "", markdown(["attack"] + eps_cols, spent), ""]
    if meta["models"].get(name, {}).get("threshold", 0) is None:
        return parts  # no rejector: everything is accepted, accepted and wrong = 1 - accuracy
    wrong = [[f"`{lab}`"] + [pct(table_value(t, name, lab, e, "mnist", "accepted_wrong")) for e in grid]
             for lab in [a.label for a in attacks if a.label in ran] + [f"worst_case_{norm}"]]
    return parts + ["Accepted and wrong (rejection on; the attacker's success), %:", "", markdown(["attack"] + eps_cols, wrong), ""]


def _detail(t: pd.DataFrame, model: str, attack: str, eps: float, metric: str, n_clean: int) -> str:
    """One MNIST metric of the details tables: iterations as a count, accuracies with their interval."""
    v = table_value(t, model, attack, eps, "mnist", metric)
    if v is None or metric not in ("accuracy", "end_to_end_accuracy"):
        return f"{v:.1f}" if metric == "mean_iterations" and v is not None else pct(v)
    lo, hi = interval(v, _images(t, model, attack, eps, n_clean))
    return f"{pct(v)} [{pct(lo)}, {pct(hi)}]"


def _clean_images(result: RunResult) -> int:
    """The run's MNIST test images (an older run.json without `n_images`: the suite's n)."""
    return int(result.meta.get("n_images", {}).get("mnist") or result.suite.data.n_test or 10000)


def _images(t: pd.DataFrame, model: str, attack: str, eps: float, n_clean: int) -> int:
    """The MNIST images an accuracy of one cell or worst-case row is measured on."""
    return int(table_value(t, model, attack, eps, "mnist", "n_samples") or n_clean)


def _cell(t: pd.DataFrame, model: str, attack: str, eps: float, n_clean: int) -> str:
    """`accuracy [95% Clopper-Pearson interval] / end-to-end` of one MNIST cell or worst-case row."""
    acc, e2e = table_value(t, model, attack, eps, "mnist", "accuracy"), table_value(t, model, attack, eps, "mnist", "end_to_end_accuracy")
    if acc is None:
        return ""
    lo, hi = interval(acc, _images(t, model, attack, eps, n_clean))
    return f"{pct(acc)} [{pct(lo)}, {pct(hi)}] / {pct(e2e)}"


def _spent(t: pd.DataFrame, model: str, attack: str, eps: float) -> str:
    """What one MNIST cell's attack spent: images attacked, images passed forward / backward."""
    got = [table_value(t, model, attack, eps, "mnist", k) for k in ("n_attacked", "forward_passes", "backward_passes")]
    if got[0] is None:
        return ""
    return f"{int(got[0])}: {_count(got[1])} / {_count(got[2])}"


def _count(v: float) -> str:
    """A pass count; from a million on in millions to 3 decimals (results.csv files written before
    whole numbers were written exactly hold 6 significant digits)."""
    return f"{v / 1e6:.3f}M" if v >= 1e6 else f"{int(v):,}"


def rerender(folder: str | Path, suite: Suite | None = None) -> Path:
    """Write `folder/README.md` again from its results.csv and run.json (e.g. after a change to
    this module), and its summary.json from those and robust_flags.json (`summary.rebuild`); the
    numbers are not recomputed. `suite`: the suite the run ran (default: `run_suite`, from the folder)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "run.json").read_text())
        table = read_table(folder / "results.csv")
    except (OSError, ValueError) as e:
        raise AttractorBenchError(f"{folder} does not hold a run's results.csv and run.json ({e}).") from e
    if list(table.columns) != COLUMNS:
        raise AttractorBenchError(f"{folder}/results.csv has the columns {', '.join(table.columns)}, not those of this "
                                  f"version ({', '.join(COLUMNS)}): rerun its suite ({meta.get('command', 'attractor-bench run')}).")
    if (folder / flags.FILE).is_file():  # a run written before the robust flags were stored keeps its summary.json
        rebuild_summary(folder)
    return write_text(folder / "README.md", render_readme(RunResult(suite or run_suite(folder, meta), table, meta), meta["command"]))


def run_suite(folder: Path, meta: dict) -> Suite:
    """The suite a run ran: its folder's copy (`suite.yaml`, written with the run), parsed under the
    path it had, so that a suite file edited since re-renders the run as it was; a run written before
    the copy existed reads the suite file it names."""
    copy = folder / SUITE_COPY
    if not copy.is_file():
        return load_suite(meta["suite_path"])
    return parse_suite(suitefile.read(copy), Path(meta["suite_path"]))


def draw_accuracy_figures(table: pd.DataFrame, meta: dict, name: str, folder: Path, n_clean: int | None) -> list[dict]:
    """The accuracy-against-eps figures of a run (one per norm its attacks use), drawn from its
    results.csv and run.json alone (so `scripts/redraw_figures.py` redraws committed runs); return
    [{file, caption}]."""
    drawn = []
    for norm, label in (("linf", "L-inf"), ("l2", "L2")):
        if any(a["norm"] == norm for a in meta["attacks"].values()):
            f = f"accuracy_{norm}.png"
            plots.accuracy_vs_eps(table, meta["attacks"], folder / f, f"{name}: defended MNIST accuracy against {label} eps",
                                  norm, n_clean)
            drawn.append({"file": f, "caption": f"Accuracy against {label} eps per model and attack (eps 0: clean); "
                                                "the black line is the worst case per sample over the attacks; bands: 95% "
                                                "Clopper-Pearson intervals; lines join neighbouring measured eps only."})
    return drawn


def draw_figures(result: RunResult, folder: Path) -> list[dict]:
    """Draw the run's figures into `folder`; return [{file, caption}] in the order the README shows them."""
    name = result.suite.name
    drawn = draw_accuracy_figures(result.table, result.meta, name, folder, _clean_images(result))
    sims = result.figures.get("similarity", [])
    if sims:
        plots.similarity_histograms(sims, folder / "similarity.png", f"{name}: Pearson similarity of input and fixed point")
        drawn.append({"file": "similarity.png", "caption": "Similarity scores of MNIST and OOD images, clean and attacked, "
                                                           "with the rejection threshold (the paper's Figures 8 and 13)."})
    for entry in result.figures.get("iterates", []):
        f = f"iterates_{entry['model']}.png"
        plots.iterates(entry, inside(folder, f), f"{name}, {entry['model']}: an input attacked by {entry['attack']} and its iterates")
        drawn.append({"file": f, "caption": f"`{entry['model']}`: the first MNIST test image attacked by `{entry['attack']}` at "
                                            "a few eps (clean, the largest, and where the predictions change), and what its "
                                            "iterates through the autoencoder change (x_0 - clean, x_1 - x_0, x_K - x_0) with "
                                            "the class predicted along them (the paper's Figures 11 and 12)."})
    return drawn


def _resumed(meta: dict) -> str:
    """How much of the run came from the cell store (a resumed run's wall time is not the cells' cost)."""
    cells = meta.get("cells") or {}
    rejected = (f"; {cells['failed_verification']} stored cells failed verification (checksum, layout or schema) and were "
                "computed again") if cells.get("failed_verification") else ""
    if not cells.get("from_store"):
        return rejected
    cost = sum(c["seconds"] for c in meta.get("cell_seconds", []))
    return (f", resuming {cells['from_store']} of {cells['total']} cells from the cell store (computed by earlier runs of "
            f"the same code, models and seed; the cells' own compute times sum to {cost:.0f} s){rejected}")


def _csv_number(v: float) -> str:
    """results.csv's numbers: 6 significant digits, whole numbers (image and pass counts) exactly."""
    return f"{v:.0f}" if float(v).is_integer() and 1e6 <= abs(v) < 2**53 else f"{v:.6g}"


def _plain(v):
    """JSON for what json cannot write itself: numpy scalars as the Python numbers and booleans they
    hold (a numpy False written as the string "False" would read back as true), anything else as text."""
    return v.item() if isinstance(v, np.generic) else str(v)


SUITE_COPY = "suite.yaml"  # the suite file a run ran, copied into its folder
NOTES = ("ABLATION.md",)  # hand-written files of a results folder that its README links (kept on rewrite)


def write_results(result: RunResult, results_dir: str | Path, command: str) -> Path:
    """Write the run's files (results.csv, robust_flags.json, run.json, summary.json from those, README.md, figures) into
    `<results_dir>/<suite name>/`, all or none: the folder is written under a temporary name and
    replaces the previous one in one step (NOTES, the hand-written notes a README links, are kept);
    return that folder."""
    result.meta.update(date=now(), commit=git_commit(), versions=environment(), command=command, seed=result.suite.seed,
                       suite=result.suite.name, suite_path=str(result.suite.path))
    final = inside(results_dir, result.suite.name)
    with replace_folder(final, keep=NOTES) as tmp:
        result.meta["figures"] = draw_figures(result, tmp)
        result.table.to_csv(tmp / "results.csv", index=False, float_format=_csv_number)
        (tmp / flags.FILE).write_text(flags.dumps(result.robust_flags, result.meta["n_images"]["mnist"]), encoding="utf-8")
        (tmp / "run.json").write_text(json.dumps(result.meta, indent=2, default=_plain) + "\n")
        if result.suite.path.is_file():  # what `rerender` reads: the suite as it ran
            shutil.copyfile(result.suite.path, tmp / SUITE_COPY)
        # README.md and summary.json from the files just written, as `attractor-bench report` writes them: a number
        # rounded from memory could differ in its last digit from the same number rounded from results.csv
        rerender(tmp, result.suite)
    return final
