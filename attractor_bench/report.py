"""Result files of a run, under `<results_dir>/<suite name>/`:

- `results.csv`: the tidy table, one row per (model, attack, eps, dataset, metric);
- `README.md`: the same numbers as readable tables, the command, seed, choices and versions;
- `run.json`: run metadata (model configurations, training histories, thresholds, versions).

Files are written to a temporary folder first and moved into place only when all are written,
so an interrupted run leaves the previous results untouched.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .config import paper_attack
from .paper import GOALS, PAPER
from .runner import RunResult

OOD_NAMES = {"fashion_mnist": "Fashion-MNIST", "cifar10_bw": "CIFAR-10-bw"}


def versions() -> dict[str, str]:
    import art
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "adversarial-robustness-toolbox": art.__version__,
            "numpy": np.__version__, "pandas": pd.__version__, "platform": platform.platform()}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _md(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _pct(v: float) -> str:
    return "n/a" if v is None or np.isnan(v) else f"{100 * v:.2f}"


def _eps(e: float) -> str:
    return "0 (clean)" if e == 0 else f"{e * 255:.4g}/255"


def _vs_goal(v: float | None, goal: float) -> str:
    return "n/a" if v is None else "met" if 100 * v >= goal else f"{goal - 100 * v:.2f} short"


def _value(t: pd.DataFrame, model: str, attack: str, eps: float, ds: str, metric: str) -> float | None:
    sel = t[(t.model == model) & (t.attack == attack) & np.isclose(t.eps, eps) & (t.dataset == ds) & (t.metric == metric)]
    return float(sel.value.iloc[0]) if len(sel) else None


def render_readme(result: RunResult, command: str) -> str:
    s, t, meta = result.suite, result.table, result.meta
    models = [m.name for m in s.models]
    parts = [f"# Results: `{s.name}`", "",
             f"Produced by `{command}` (suite `{s.path}`, seed {s.seed}) on {meta['date']}, "
             f"commit `{meta.get('commit') or 'unknown'}`, in {meta['wall_seconds']:.0f} s. "
             "`results.csv` holds every number below (fractions; shown here in percent), `run.json` the run's metadata.", ""]
    d = s.defence.params
    parts += ["## Choices", "",
              f"- Defence `{s.defence.name}`: iterate x <- G(x) until max|x_(k+1) - x_k| < {d['tol']:g} per sample, at most "
              f"{d['max_iter']} iterations, iterates clipped to [0, 1]: {d.get('clip', True)}; backward pass for `pipeline` attacks: `{d['backward']}`.",
              "- Rejector: Pearson similarity between the input and its fixed point, "
              + (f"threshold T = {s.rejector.threshold:g}." if s.rejector.target_tpr is None else
                 f"threshold calibrated to accept {s.rejector.target_tpr:.0%} of the MNIST validation split."),
              "- `accuracy`: prediction of the head after the fixed-point iteration; `single pass`: without iteration. "
              "OOD metrics treat MNIST (ID) as the positive class; recall = share of MNIST accepted.",
              "- Attacks: " + "; ".join(f"`{a.label}` = {a.name} on the `{a.target.value}` "
                                        f"({'single pass of the trained network' if a.target.value == 'network' else 'defended pipeline'}), "
                                        f"cross-entropy loss, true labels on MNIST and the model's predictions on OOD sets" for a in s.attacks) + ".",
              ""]
    for name, m in meta["models"].items():
        c = m["config"]
        h = m["history"]
        parts.append(f"- Model `{name}` (preset `{m['preset']}`): weights a = {tuple(c['weights'])}, n_train = {c['n_train']}, "
                     f"output activation {c['output_activation']}, L_rec {c['rec_reduction']}, L_eigen {c['penalty']}, "
                     f"threshold used {m['threshold']:.4f}; best epoch / epochs run per stage: "
                     + ", ".join(f"{k} {v['best_epoch']}/{v['epochs']} (val acc {v['best_val_accuracy']:.2%})" for k, v in h.items()) + ".")
    parts.append("")

    if s.reference == "paper":
        fgsm, rows = paper_attack(s.attacks), []
        for spec in s.models:  # matched on the preset, whatever the model is called in the suite
            for (preset, eps, ds, metric), ref in PAPER.items():
                if preset != spec.preset:
                    continue
                attack = "none" if eps == 0 else fgsm.label
                ours = _value(t, spec.name, attack, eps, ds, metric)
                single = _value(t, spec.name, attack, eps, ds, f"{metric}_single_pass")
                if ours is not None:
                    rows.append([spec.name, _eps(eps), "MNIST" if ds == "mnist" else f"MNIST vs {OOD_NAMES[ds]}", metric,
                                 f"{ref:.2f}", _pct(ours), f"{100 * ours - ref:+.2f}",
                                 _pct(single), "n/a" if single is None else f"{100 * single - ref:+.2f}"])
        parts += ["## Beside the paper", "",
                  f"Paper: Alipour & SeyyedSalehi, Tables 1-2 and section 3.2, in percent. Ours: attack `{fgsm.label}` "
                  "(FGSM on the network's single pass); *iterated* = classified and scored at G^n(x) after the defence's "
                  f"iterations (the paper's test-time procedure; here at most {d['max_iter']}, see Choices), "
                  "*one pass* = classified from x and scored by Pearson(G(x), x).", "",
                  _md(["model", "eps", "data", "metric", "paper", "ours, iterated", "diff", "ours, one pass", "diff"], rows), "",
                  "Where and why these differ from the paper, as far as is known, is written up in the project "
                  "README's results section and in [ABLATION.md](ABLATION.md) (experiments on the validation split).", ""]
        full = [m.name for m in s.models if m.preset == "attractor_full"]
        paper_attractor = next((m.name for m in s.models if m.preset == "attractor"), None)
        if full:
            rows = []
            for name in full:
                for (eps, ds, metric), goal in GOALS.items():
                    attack = "none" if eps == 0 else fgsm.label
                    ours = _value(t, name, attack, eps, ds, metric)
                    single = _value(t, name, attack, eps, ds, f"{metric}_single_pass")
                    if ours is None:
                        continue
                    ref = PAPER.get(("attractor", eps, ds, metric))
                    theirs = _value(t, paper_attractor, attack, eps, ds, metric) if paper_attractor else None
                    rows.append([name, _eps(eps), "MNIST" if ds == "mnist" else f"MNIST vs {OOD_NAMES[ds]}", metric,
                                 f">= {goal:g}", _pct(ours), _vs_goal(ours, goal), _pct(single), _vs_goal(single, goal),
                                 "n/a" if ref is None else f"{ref:.2f}", _pct(theirs)])
            parts += ["## The full-data attractor against its goals", "",
                      "Preset `attractor_full`: the attractor loss on all 50,000 training images with the estimated "
                      "L_eigen, fine-tuned from the baseline. Goals (lower bounds, percent) beside the paper's "
                      f"1,000-sample attractor (paper) and ours (`{paper_attractor}`, iterated).", "",
                      _md(["model", "eps", "data", "metric", "goal", "ours, iterated", "vs goal", "ours, one pass", "vs goal",
                           "paper's attractor", f"`{paper_attractor}`"], rows), ""]

    for a in s.attacks:
        grid = [0.0] + list(a.eps)
        cols = {"accuracy": "accuracy", "accuracy_single_pass": "acc. 1 pass", "accepted": "accepted",
                "accepted_single_pass": "accepted 1 pass", "end_to_end_accuracy": "end-to-end", "mean_iterations": "iterations"}
        header = ["eps"] + [f"{m} {k}" for m in models for k in cols.values()]
        rows = []
        for e in grid:
            att = "none" if e == 0 else a.label
            rows.append([_eps(e)] + [(f"{v:.1f}" if k == "mean_iterations" and v is not None else _pct(v))
                                     for m in models for k in cols for v in [_value(t, m, att, e, "mnist", k)]])
        parts += [f"## MNIST test accuracy under `{a.label}`", "", _md(header, rows), ""]
        for ds in s.data.ood:
            cols = {"ood_accuracy": "acc", "ood_precision": "prec", "ood_recall": "rec", "ood_auroc": "AUROC",
                    "ood_accuracy_single_pass": "acc 1 pass", "ood_auroc_single_pass": "AUROC 1 pass"}
            header = ["eps"] + [f"{m} {k}" for m in models for k in cols.values()]
            rows = []
            for e in grid:
                att = "none" if e == 0 else a.label
                rows.append([_eps(e)] + [_pct(_value(t, m, att, e, ds, k)) for m in models for k in cols])
            parts += [f"### OOD detection, MNIST vs {OOD_NAMES[ds]}, under `{a.label}` (both attacked)", "", _md(header, rows), ""]

    cells = pd.DataFrame(meta["cell_seconds"])
    if len(cells):
        def trained(m: dict) -> str:
            return "unknown" if m.get("train_seconds") is None else f"{m['train_seconds']:.0f}"

        rows = [[m, trained(meta["models"][m]), "yes" if meta["models"][m]["from_cache"] else "no",
                 f"{cells[cells.model == m].seconds.sum():.0f}"] for m in models]
        parts += ["## Time (seconds)", "", _md(["model", "training", "loaded from cache in this run", "attacks + evaluation, all cells"], rows), "",
                  "Per-cell times are in `run.json` (`cell_seconds`).", ""]
    parts += ["## Versions", "", _md(["package", "version"], [[k, v] for k, v in meta["versions"].items()]), ""]
    return "\n".join(parts)


def rerender(folder: str | Path) -> Path:
    """Write `folder/README.md` again from its results.csv and run.json (e.g. after a change to
    this module); the numbers are not recomputed."""
    from .config import load_suite
    from .errors import AttractorBenchError

    folder = Path(folder)
    try:
        meta = json.loads((folder / "run.json").read_text())
        table = pd.read_csv(folder / "results.csv")
    except (OSError, ValueError) as e:
        raise AttractorBenchError(f"{folder} does not hold a run's results.csv and run.json ({e}).") from e
    result = RunResult(load_suite(meta["suite_path"]), table, meta)
    tmp = folder / ".README.md.tmp"
    tmp.write_text(render_readme(result, meta["command"]))
    os.replace(tmp, folder / "README.md")
    return folder / "README.md"


def write_results(result: RunResult, results_dir: str | Path, command: str) -> Path:
    """Write the three files for `result` atomically; return the suite's results folder."""
    result.meta.update(date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), commit=git_commit(),
                       versions=versions(), command=command, seed=result.suite.seed, suite_path=str(result.suite.path))
    final = Path(results_dir) / result.suite.name
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{result.suite.name}.", dir=final.parent))
    try:
        result.table.to_csv(tmp / "results.csv", index=False, float_format="%.6g")
        (tmp / "README.md").write_text(render_readme(result, command))
        (tmp / "run.json").write_text(json.dumps(result.meta, indent=2, default=str) + "\n")
        final.mkdir(exist_ok=True)
        for f in ("results.csv", "README.md", "run.json"):
            os.replace(tmp / f, final / f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
