"""An OOD run's files: ood.csv (the tidy table), ood.json (run metadata, the best rejector per
model, the accuracy/coverage curves), accuracy_coverage.png and README.md, rendered from the first
two alone (`render_readme`), so `attractor-bench report` can redo it without recomputing.

*Best rejector* of a model: among its two or three rejectors, the one with the highest robust
AUROC (joint, worst over the score attacks) averaged over the OOD sets at the first eps, measured
on the validation images (ood.json's `validation`: MNIST validation images and images of each OOD
set apart from the test images; `evaluate.selection`). Its numbers are then reported on the test
sets; a choice made on the test sets would bias them upward. Runs made before (no `validation`)
chose on the test sets, and their READMEs say so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from attractor_bench import plots, tables
from attractor_bench.data import DISPLAY_NAMES as REAL_NAMES
from attractor_bench.files import replace_folder
from attractor_bench.metrics import accuracy_coverage
from attractor_bench.summary import dumps

from . import synthetic

DISPLAY_NAMES = {**REAL_NAMES, **synthetic.DISPLAY_NAMES}
TABLE, META, FIGURE = "ood.csv", "ood.json", "accuracy_coverage.png"
FORMAT = 1
GRID = 51  # points per accuracy/coverage curve kept in ood.json


def best_rejectors(validation: dict[str, dict[str, float]]) -> dict[str, str]:
    """Per model, the rejector with the highest robust AUROC on the validation images (`validation`:
    model -> rejector -> that AUROC, `evaluate.selection`); a tie goes to the alphabetically first."""
    return {m: min(rs, key=lambda r: (-rs[r], r)) for m, rs in validation.items()}


def _curve(scores: np.ndarray, correct: np.ndarray, threshold: float) -> dict:
    cov, acc = accuracy_coverage(scores, correct)
    idx = np.unique(np.clip(np.round(np.linspace(0, len(cov) - 1, GRID)).astype(int), 0, len(cov) - 1))
    accepted = scores <= threshold
    at_t = [float(accepted.mean()), float(correct[accepted].mean()) if accepted.any() else None]
    return {"coverage": cov[idx].tolist(), "accuracy": acc[idx].tolist(), "at_threshold": at_t}


def summarize_curves(curves: dict, table: pd.DataFrame) -> dict:
    thresholds = table.groupby(["model", "rejector"]).threshold.first().to_dict()
    return {m: {r: {c: _curve(s, ok, thresholds[(m, r)]) for c, (s, ok) in conds.items()} for r, conds in rs.items()}
            for m, rs in curves.items()}


def auroc_summary(table: pd.DataFrame, eps: float) -> dict:
    """model -> rejector -> OOD set -> AUROC clean and, at `eps`, worst over the score attacks with ID
    attacked (`id`), OOD attacked (`ood`) and both (`robust`): what the leaderboard reads."""
    out: dict = {}
    for (m, r, d), g in table.groupby(["model", "rejector", "dataset"], sort=False):
        at = g[np.isclose(g.eps, eps) & (g.attack == "worst")].set_index("direction").AUROC
        out.setdefault(m, {}).setdefault(r, {})[d] = {
            "clean": float(g[g.direction == "clean"].AUROC.iloc[0]), "threshold": float(g.threshold.iloc[0]),
            **{k: float(at[direction]) for k, direction in (("id", "id"), ("ood", "ood"), ("robust", "joint"))}}
    return out


def meta_doc(result, command: str, commit: str | None, date: str) -> dict:
    eps0 = result.suite.eps[0]
    return {"format": FORMAT, "kind": "ood", "scores": "outlier", "suite": result.suite.name, "command": command, "commit": commit,
            "date": date, **result.meta, "best_rejector": best_rejectors(result.meta["validation"]["robust_auroc"]),
            "auroc": {"eps": eps0, "attacks": list(result.suite.attacks), "models": auroc_summary(result.table, eps0)},
            "curves": summarize_curves(result.curves, result.table)}


def _pct(v) -> str:
    return tables.pct(v, tables.DASH)


def _get(t: pd.DataFrame, **where) -> pd.Series | None:
    m = np.ones(len(t), bool)
    for k, v in where.items():
        m &= np.isclose(t[k], v) if isinstance(v, float) else (t[k] == v).to_numpy()
    sel = t[m]
    return None if sel.empty else sel.iloc[0]


def _v(t, metric, **where) -> str:
    row = _get(t, **where)
    return tables.DASH if row is None else _pct(row[metric])


# what the scores and thresholds of ood.csv are: outlier scores (this code's, pytorch-ood's convention), or
# the ID scores of the runs made before (issue 37), whose README re-renders as it was written
_SCORES = {
    "outlier": ("Scores are outlier scores (higher = more OOD: minus the similarity, minus the maximum softmax "
                "probability, the energy); a rejector accepts an image whose score is at most its threshold T: the "
                "suite's for a model's own rejector (the attractor's: minus its similarity threshold), else the score "
                "that accepts 95% of 2,000 MNIST validation images.", "ID images pushed to be rejected, OOD images to be accepted"),
    "id": ("A rejector accepts an image whose score is at least its threshold T: the suite's threshold for the attractor's "
           "own similarity, else the score that accepts 95% of 2,000 MNIST validation images.",
           "ID images pushed down (to be rejected), OOD images pushed up (to be accepted)"),
}


def _intro(meta: dict) -> list[str]:
    sets, n = meta["ood"], meta["n_images"]
    return [f"# OOD detection under attack: `{meta['suite']}`", "",
            f"Reproduce with `{meta['command']}` (commit `{meta['commit']}`, {meta['date']}, {meta['device']}, "
            f"{meta['wall_seconds']:.0f} s). MNIST's first {n['mnist']} test images are in-distribution (ID), against "
            + ", ".join(f"{DISPLAY_NAMES[d]} ({n[d]} images)" for d in sets) + ". Every model is the one `attractor-bench run` "
            "trains for its suite (the same weights, defence and threshold as on the leaderboard).", "",
            "Rejectors (attractor_bench/ood/rejectors.py): *similarity*, Pearson(reconstruction(x), x) where the defence "
            "reconstructs (the attractor's fixed point, a purifier's DAE); *msp*, the maximum softmax probability; *energy*, "
            "logsumexp of the logits. " + _SCORES[meta.get("scores", "id")][0], "",
            "Score attacks (attractor_bench/ood/attacks.py), L-inf, through the whole defended pipeline: "
            + ", ".join(f"{a} ({', '.join(f'{k} {v:g}' for k, v in meta['budgets'][a].items())})" for a in meta["attacks"])
            + " on the rejector's score, " + _SCORES[meta.get("scores", "id")][1] + "; "
            "*worst*: per image the worst score over the attacks. Directions: *ID attacked* (OOD clean), *OOD attacked* "
            "(ID clean), *joint* (both attacked: the **robust AUROC**). Metrics as pytorch-ood names them, OOD the positive "
            "class: AUROC, AUPR-IN, AUPR-OUT, FPR95TPR (the share of ID images rejected where 95% of the OOD images are). "
            "Numbers in percent.", ""]


def _best_table(table: pd.DataFrame, meta: dict) -> list[str]:
    sets, eps0, best, val = meta["ood"], meta["eps"][0], meta["best_rejector"], meta.get("validation")
    header = ["model", "best rejector", *[f"{DISPLAY_NAMES[d]} clean / robust" for d in sets]]
    body = [[f"`{m}`", best[m], *[f"{_v(table, 'AUROC', model=m, rejector=best[m], dataset=d, direction='clean')} / "
                                  f"{_v(table, 'AUROC', model=m, rejector=best[m], dataset=d, eps=eps0, direction='joint', attack='worst')}"
                                  for d in sets]] for m in meta["models"]]
    if val is None:  # a run from before the choice on validation images
        rule = ("Best: the rejector with the highest robust AUROC averaged over the OOD sets, picked on these test sets among "
                "the model's two or three (all of them below).")
    else:
        header.append("robust AUROC on validation")
        for row, m in zip(body, meta["models"]):
            row.append(", ".join(f"{r} {_pct(val['robust_auroc'][m][r])}" for r in table[table.model == m].rejector.unique()))
        n = val["n_images"]
        rule = (f"Best: the rejector with the highest robust AUROC averaged over the OOD sets, chosen among the model's two "
                f"or three on validation images, none of them a test image: {n['mnist']:,} MNIST validation images (after "
                f"those that calibrate the thresholds) and {', '.join(f'{n[d]:,} of {DISPLAY_NAMES[d]}' for d in sets)} "
                "(images after the test images, or another noise stream), attacked as the test images are at eps "
                f"{tables.fmt_eps(val['eps'])}. The AUROCs shown are the chosen rejector's on the test sets (every "
                "rejector's are below).")
    return [f"## AUROC per model, its best rejector (L-inf eps {tables.fmt_eps(eps0)})", "", rule, "",
            tables.markdown(header, body), ""]


def _set_table(table: pd.DataFrame, meta: dict, d: str, e: float) -> list[str]:
    header = ["model", "rejector", "T", "AUROC clean", "ID attacked", "OOD attacked", "joint (robust)",
              "AUPR-IN clean / joint", "AUPR-OUT clean / joint", "FPR95TPR clean / joint",
              "ID accepted clean / attacked", "OOD accepted clean / attacked"]
    body = []
    for m in meta["models"]:
        for r in table[table.model == m].rejector.unique():
            w = dict(model=m, rejector=r, dataset=d)
            c, j = _get(table, **w, direction="clean"), _get(table, **w, eps=e, direction="joint", attack="worst")
            body.append([f"`{m}`", r, f"{c.threshold:.4g}", _pct(c.AUROC),
                         _v(table, "AUROC", **w, eps=e, direction="id", attack="worst"),
                         _v(table, "AUROC", **w, eps=e, direction="ood", attack="worst"), f"**{_pct(j.AUROC)}**",
                         f"{_pct(c['AUPR-IN'])} / {_pct(j['AUPR-IN'])}", f"{_pct(c['AUPR-OUT'])} / {_pct(j['AUPR-OUT'])}",
                         f"{_pct(c.FPR95TPR)} / {_pct(j.FPR95TPR)}", f"{_pct(c.id_accepted)} / {_pct(j.id_accepted)}",
                         f"{_pct(c.ood_accepted)} / {_pct(j.ood_accepted)}"])
    return [f"## {DISPLAY_NAMES[d]}, L-inf eps {tables.fmt_eps(e)}", "", tables.markdown(header, body), ""]


def _attack_table(table: pd.DataFrame, meta: dict, e: float) -> list[str]:
    attacks = [*meta["attacks"], "worst"]
    body = [[f"`{m}`", r, DISPLAY_NAMES[d], *[_v(table, "AUROC", model=m, rejector=r, dataset=d, eps=e, direction="joint",
                                                 attack=a) for a in attacks]]
            for m in meta["models"] for r in table[table.model == m].rejector.unique() for d in meta["ood"]]
    return [f"## Robust AUROC per score attack, L-inf eps {tables.fmt_eps(e)}", "",
            "The joint AUROC under each attack alone; a black-box attack (square) below the gradient attacks would "
            "point at masked score gradients.", "", tables.markdown(["model", "rejector", "OOD set", *attacks], body), ""]


def _cross_table(table: pd.DataFrame, meta: dict, e: float) -> list[str]:
    cross = table[(table.attack.isin(["rejection_aware", "k_plus_one", "stronger"])) & np.isclose(table.eps, e)]
    if cross.empty:
        return []
    body = []
    for m in dict.fromkeys(cross.model):
        for d in meta["ood"]:
            w = dict(model=m, rejector="similarity", dataset=d, eps=e, direction="ood")
            body.append([f"`{m}`", DISPLAY_NAMES[d],
                         *[_v(table, "ood_accepted", **w, attack=a) for a in ("rejection_aware", "k_plus_one", "stronger")],
                         *[_v(table, "AUROC", **w, attack=a) for a in ("rejection_aware", "k_plus_one", "worst")]])
    return [f"## Cross-check: the K+1 formulation through ART's DetectorClassifier, L-inf eps {tables.fmt_eps(e)}", "",
            "OOD images attacked to be accepted by the attractor's rejector (at its threshold): the project's rejection-aware "
            "attack, the K+1 attack (Carlini & Wagner 2017: the detector as an extra class of ART's `DetectorClassifier`, "
            "signed steps on C&W's margin loss), and per image the stronger of the two. Last columns: the AUROC with these "
            "OOD images (ID clean), beside the score attacks' worst.", "",
            tables.markdown(["model", "OOD set", "accepted: rejection-aware", "accepted: K+1", "accepted: stronger",
                             "AUROC: rejection-aware", "AUROC: K+1", "AUROC: score attacks' worst"], body), ""]


def _coverage_section(meta: dict) -> list[str]:
    eps_list = meta["eps"]
    return ["## Accuracy against coverage", "",
            "Accuracy on the accepted MNIST test images against the share accepted as the threshold moves, clean and under "
            "PGD (cross-entropy through the pipeline, the registry's `pgd`); a dot marks each rejector's threshold.", "",
            f"![accuracy against coverage per model and rejector]({FIGURE})", "",
            "| model | clean accuracy | " + " | ".join(f"PGD {tables.fmt_eps(e)}" for e in eps_list) + " |",
            "|---|---|" + "---|" * len(eps_list),
            *[f"| `{m}` | {_pct(i['clean_accuracy'])} | " + " | ".join(_pct(i[f'pgd_accuracy_{e:g}']) for e in eps_list)
              + " |" for m, i in meta["models"].items()], "",
            "The run's wall time counts only what it computed: models whose numbers an earlier run had stored in the cache "
            "are read from there (ood.json's `model_seconds`). " + _made_by(meta), ""]


def _made_by(meta: dict) -> str:
    """The component versions the run used and what it ran on (a run of earlier code: its fingerprint)."""
    if "components" not in meta:
        return (f"Code fingerprint `{meta.get('code')}`: made before component versions (results/CARRIED_OVER.json holds "
                "the checks that link it to them).")
    env = meta.get("environment") or {}
    return ("Component versions: " + ", ".join(f"{k} {v}" for k, v in meta["components"].items())
            + f" (attractor_bench/components.py). Ran on torch {env.get('torch')}, ART "
              f"{env.get('adversarial-robustness-toolbox')}, numpy {env.get('numpy')}, {env.get('device')}.")


def render_readme(table: pd.DataFrame, meta: dict) -> str:
    parts = _intro(meta) + _best_table(table, meta)
    for e in meta["eps"]:
        for d in meta["ood"]:
            parts += _set_table(table, meta, d, e)
        parts += _attack_table(table, meta, e) + _cross_table(table, meta, e)
    return "\n".join(parts + _coverage_section(meta))


def _panels(meta: dict) -> dict:
    out = {}
    for m, rs in meta["curves"].items():
        out[m] = {r: {"curves": {c: (v["coverage"], v["accuracy"], v["at_threshold"]) for c, v in conds.items()}}
                  for r, conds in rs.items()}
    return out


def draw_figure(meta: dict, folder: Path) -> Path:
    """accuracy_coverage.png (and its SVG) from an OOD run's ood.json alone."""
    return plots.accuracy_coverage(_panels(meta), folder / FIGURE, f"{meta['suite']}: accuracy against coverage",
                                   meta.get("n_images", {}).get("mnist"))


def write_ood(result, folder: Path, command: str, commit: str | None, date: str) -> Path:
    """Write the run's folder (replacing an earlier one in one step); return it."""
    doc = meta_doc(result, command, commit, date)
    with replace_folder(folder) as tmp:
        result.table.to_csv(tmp / TABLE, index=False, float_format="%.6f")
        (tmp / META).write_text(dumps(doc), encoding="utf-8")
        draw_figure(doc, tmp)
        (tmp / "README.md").write_text(render_readme(pd.read_csv(tmp / TABLE), json.loads((tmp / META).read_text())),
                                       encoding="utf-8")
    return folder


def rerender(folder: Path) -> str:
    return render_readme(pd.read_csv(folder / TABLE), json.loads((folder / META).read_text(encoding="utf-8")))
