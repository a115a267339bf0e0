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
from .paper import PAPER
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
                ours = _value(t, spec.name, "none" if eps == 0 else fgsm.label, eps, ds, metric) if preset == spec.preset else None
                if ours is not None:
                    rows.append([spec.name, _eps(eps), "MNIST" if ds == "mnist" else f"MNIST vs {OOD_NAMES[ds]}", metric,
                                 f"{ref:.2f}", _pct(ours), f"{100 * ours - ref:+.2f}"])
        parts += ["## Beside the paper", "",
                  f"Paper: Alipour & SeyyedSalehi, Tables 1-2 and section 3.2, in percent; ours from attack `{fgsm.label}` "
                  "(FGSM on the network's single pass), evaluated after the fixed-point iteration.", "",
                  _md(["model", "eps", "data", "metric", "paper", "ours", "ours - paper"], rows), ""]

    for a in s.attacks:
        grid = [0.0] + list(a.eps)
        header = ["eps"] + [f"{m} {k}" for m in models for k in ("accuracy", "single pass", "accepted", "end-to-end")]
        rows = []
        for e in grid:
            att = "none" if e == 0 else a.label
            rows.append([_eps(e)] + [_pct(_value(t, m, att, e, "mnist", k)) for m in models
                                     for k in ("accuracy", "accuracy_single_pass", "accepted", "end_to_end_accuracy")])
        parts += [f"## MNIST test accuracy under `{a.label}`", "", _md(header, rows), ""]
        for ds in s.data.ood:
            header = ["eps"] + [f"{m} {k}" for m in models for k in ("acc", "prec", "rec", "AUROC")]
            rows = []
            for e in grid:
                att = "none" if e == 0 else a.label
                rows.append([_eps(e)] + [_pct(_value(t, m, att, e, ds, k)) for m in models
                                         for k in ("ood_accuracy", "ood_precision", "ood_recall", "ood_auroc")])
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


def write_results(result: RunResult, results_dir: str | Path, command: str) -> Path:
    """Write the three files for `result` atomically; return the suite's results folder."""
    result.meta.update(date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), commit=git_commit(),
                       versions=versions(), command=command, seed=result.suite.seed)
    final = Path(results_dir) / result.suite.name
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{result.suite.name}.", dir=final.parent))
    try:
        result.table.to_csv(tmp / "results.csv", index=False, float_format="%.6g")
        (tmp / "README.md").write_text(render_readme(result, command))
        (tmp / "run.json").write_text(json.dumps(result.meta, indent=2, sort_keys=True, default=str) + "\n")
        final.mkdir(exist_ok=True)
        for f in ("results.csv", "README.md", "run.json"):
            os.replace(tmp / f, final / f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
