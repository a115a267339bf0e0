"""Metrics of the result tables. OOD detection treats in-distribution (ID) as the positive class,
as the paper's tables do: recall is the share of ID images accepted, precision the share of
accepted images that are ID. Scores are similarities: higher means more ID-like.
All values are fractions in [0, 1]."""

from __future__ import annotations

import numpy as np


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y))


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_vals)) + 1]
    ends = np.r_[starts[1:], len(values)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under the ROC curve, ID positive (Mann-Whitney U / (n_id * n_ood))."""
    n_id, n_ood = len(id_scores), len(ood_scores)
    ranks = _ranks(np.concatenate([id_scores, ood_scores]).astype(np.float64))
    u = ranks[:n_id].sum() - n_id * (n_id + 1) / 2.0
    return float(u / (n_id * n_ood))


def fpr_at_tpr(id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95) -> float:
    """Share of OOD images accepted at the highest threshold that accepts >= `tpr` of ID images."""
    threshold = np.sort(id_scores)[::-1][int(np.ceil(tpr * len(id_scores))) - 1]
    return float(np.mean(ood_scores >= threshold))


def ood_metrics(id_scores: np.ndarray, ood_scores: np.ndarray, threshold: float) -> dict[str, float]:
    id_acc, ood_acc = id_scores >= threshold, ood_scores >= threshold
    tp, fn = id_acc.sum(), (~id_acc).sum()
    fp, tn = ood_acc.sum(), (~ood_acc).sum()
    return {
        "ood_accuracy": float((tp + tn) / (tp + fn + fp + tn)),
        "ood_precision": float(tp / (tp + fp)) if tp + fp else float("nan"),
        "ood_recall": float(tp / (tp + fn)),
        "ood_auroc": auroc(id_scores, ood_scores),
        "ood_fpr_at_95tpr": fpr_at_tpr(id_scores, ood_scores, 0.95),
        "accepted": float(ood_acc.mean()),
    }


def accepted(out: dict, threshold: float | None) -> np.ndarray:
    """Which samples the rejector accepts, outlier score <= threshold (all of them without a rejector,
    `threshold` None)."""
    return np.ones(len(out["pred"]), bool) if threshold is None else out["score"] <= threshold


def cell_metrics(out: dict, id_out: dict | None, y: np.ndarray | None, threshold: float | None) -> dict[str, float]:
    """The metrics of one cell from `evaluate`'s outputs and `perturbation_sizes`. For MNIST (`y`
    given): accuracies and acceptance; for an OOD set: detection metrics against `id_out`, MNIST's
    outputs at the same (attack, eps), NaN without a rejector (`threshold` None). Both: iterations
    and the size of the perturbation applied."""
    common = {
        "mean_iterations": out["n_iter"].mean(),
        "perturbation_linf": out["delta_linf"].mean(),
        "perturbation_l2": out["delta_l2"].mean(),
        # what the attack spent: images attacked, images through the pipeline forward and backward
        **{k: float(out[k]) for k in ("n_attacked", "forward_passes", "backward_passes") if k in out},
    }
    accepted_ = accepted(out, threshold)
    if y is not None:
        return {
            "accuracy": accuracy(out["pred"], y),
            "accuracy_single_pass": accuracy(out["pred_single"], y),
            "accepted": accepted_.mean(),
            "end_to_end_accuracy": ((out["pred"] == y) & accepted_).mean(),  # rejector on: accepted and correct
            "rejected": 1.0 - accepted_.mean(),
            "accepted_wrong": ((out["pred"] != y) & accepted_).mean(),
            "accepted_single_pass": accepted({**out, "score": out["score_single"]}, threshold).mean(),
            **common,
        }
    if threshold is None:
        nan = float("nan")
        return {**{k: nan for k in ("ood_accuracy", "ood_precision", "ood_recall", "ood_auroc", "ood_fpr_at_95tpr")},
                "accepted": 1.0, **{f"{k}_single_pass": nan for k in ("ood_accuracy", "ood_precision", "ood_recall",
                                                                        "ood_auroc")}, **common}
    single = ood_metrics(-id_out["score_single"], -out["score_single"], -threshold)
    return {
        **ood_metrics(-id_out["score"], -out["score"], -threshold),
        # the same rejector on Pearson(G(x), x), one pass without iteration
        **{f"{k}_single_pass": single[k] for k in ("ood_accuracy", "ood_precision", "ood_recall", "ood_auroc")},
        **common,
    }


def threshold_at_tpr(id_scores: np.ndarray, tpr: float = 0.95) -> float:
    """The lowest threshold T that accepts (outlier score <= T) at least `tpr` of the in-distribution
    images' outlier scores `id_scores`: how a rejector is fitted (`Rejector.fit`)."""
    s = np.sort(np.asarray(id_scores, np.float64))
    return float(s[max(int(np.ceil(tpr * len(s) - 1e-9)), 1) - 1])
