"""The metrics of every table: accuracies, acceptance, and OOD detection in pytorch-ood's vocabulary.

**OOD detection follows pytorch-ood's `OODMetrics`** (definitions from its `utils.metrics`,
computed with scikit-learn: pytorch-ood imports torchvision at import time, which does not load
beside the CPU build of torch this project pins). Scores are *outlier* scores, higher = more OOD
(`attractor_bench.rejectors`), and OOD is the positive class:

- `AUROC`: area under the ROC curve (ties count half; the same number whichever class is positive);
- `AUPR-IN`: area under the precision-recall curve with ID positive (a lower outlier score = more
  likely ID), by the trapezoidal rule over sklearn's `precision_recall_curve`;
- `AUPR-OUT`: the same with OOD positive;
- `FPR95TPR`: the share of ID images flagged as OOD at the first threshold where 95% of the OOD
  images are flagged.

`ood_metrics(id_scores, ood_scores)` gives the four; a classification run's results.csv writes them
per OOD set as `ood_<KEY>` (`ood_AUROC`, ..., `ood_FPR95TPR`), an OOD run's ood.csv as `<KEY>`.

At the rejector's threshold (`detection_at_threshold`), the paper's three threshold metrics, with
**ID the positive class as the paper's tables have it**: `ood_accuracy`, `ood_precision` (the share
of accepted images that are ID), `ood_recall` (the share of ID images accepted). All values are
fractions in [0, 1].
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score, roc_curve

KEYS = ("AUROC", "AUPR-IN", "AUPR-OUT", "FPR95TPR")
PAPER = ("ood_accuracy", "ood_precision", "ood_recall")  # at the threshold, ID positive (the paper's tables)
SINGLE_PASS = ("ood_accuracy", "ood_precision", "ood_recall", "ood_AUROC")  # also on the single-pass score


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y))


def _aupr(labels: np.ndarray, scores: np.ndarray) -> float:
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(auc(recall, precision))


def ood_metrics(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    """pytorch-ood's four metrics (fractions) of the outlier scores of ID images against those of OOD images."""
    id_scores, ood_scores = np.asarray(id_scores, np.float64), np.asarray(ood_scores, np.float64)
    if not (len(id_scores) and len(ood_scores)):
        raise ValueError("ood_metrics needs at least one ID and one OOD score.")
    if np.isnan(id_scores).any() or np.isnan(ood_scores).any():
        raise ValueError("ood_metrics: the scores contain NaN.")
    outlier = np.concatenate([id_scores, ood_scores])
    is_ood = np.r_[np.zeros(len(id_scores), int), np.ones(len(ood_scores), int)]
    fpr, tpr, _ = roc_curve(is_ood, outlier, drop_intermediate=False)
    return {
        "AUROC": float(roc_auc_score(is_ood, outlier)),
        "AUPR-IN": _aupr(1 - is_ood, -outlier),
        "AUPR-OUT": _aupr(is_ood, outlier),
        "FPR95TPR": float(fpr[min(np.searchsorted(tpr, 0.95), len(fpr) - 1)]),
    }


def detection_at_threshold(id_scores: np.ndarray, ood_scores: np.ndarray, threshold: float) -> dict[str, float]:
    """The paper's threshold metrics (ID positive: accepted = score <= threshold) and the share of OOD images accepted."""
    id_acc, ood_acc = id_scores <= threshold, ood_scores <= threshold
    tp, fn = id_acc.sum(), (~id_acc).sum()
    fp, tn = ood_acc.sum(), (~ood_acc).sum()
    return {
        "ood_accuracy": float((tp + tn) / (tp + fn + fp + tn)),
        "ood_precision": float(tp / (tp + fp)) if tp + fp else float("nan"),
        "ood_recall": float(tp / (tp + fn)),
        "accepted": float(ood_acc.mean()),
    }


def accuracy_coverage(scores: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, accuracy): the rejector's accuracy/coverage curve (selective classification),
    accepting the k lowest-scoring images for k = 1..n (ties broken by index): the share accepted
    k/n and the accuracy on those k."""
    scores, correct = np.asarray(scores, np.float64), np.asarray(correct, bool)
    order = np.lexsort((np.arange(len(scores)), scores))
    k = np.arange(1, len(scores) + 1)
    return k / len(scores), np.cumsum(correct[order]) / k


def threshold_at_tpr(id_scores: np.ndarray, tpr: float = 0.95) -> float:
    """The lowest threshold T that accepts (outlier score <= T) at least `tpr` of the in-distribution
    images' outlier scores `id_scores`: how a rejector is fitted (`Rejector.fit`)."""
    s = np.sort(np.asarray(id_scores, np.float64))
    return float(s[max(int(np.ceil(tpr * len(s) - 1e-9)), 1) - 1])


def accepted(out: dict, threshold: float | None) -> np.ndarray:
    """Which samples the rejector accepts, outlier score <= threshold (all of them without a rejector,
    `threshold` None)."""
    return np.ones(len(out["pred"]), bool) if threshold is None else out["score"] <= threshold


def _accepted_single(out: dict, threshold: float | None, single: bool) -> float:
    """The share accepted on the rejector's single-pass score: all without a rejector, NaN where it has none."""
    if threshold is None:
        return 1.0
    return float(accepted({**out, "score": out["score_single"]}, threshold).mean()) if single else float("nan")


def _detection(id_scores: np.ndarray, ood_scores: np.ndarray, threshold: float) -> dict[str, float]:
    return {**detection_at_threshold(id_scores, ood_scores, threshold),
            **{f"ood_{k}": v for k, v in ood_metrics(id_scores, ood_scores).items()}}


def cell_metrics(out: dict, id_out: dict | None, y: np.ndarray | None, threshold: float | None) -> dict[str, float]:
    """The metrics of one cell from `evaluate`'s outputs and `perturbation_sizes`. For MNIST (`y`
    given): accuracies and acceptance; for an OOD set: detection metrics against `id_out`, MNIST's
    outputs at the same (attack, eps), NaN without a rejector (`threshold` None), the single-pass
    ones NaN where the rejector has no single-pass score. Both: iterations and the size of the
    perturbation applied."""
    common = {
        "mean_iterations": out["n_iter"].mean(),
        "perturbation_linf": out["delta_linf"].mean(),
        "perturbation_l2": out["delta_l2"].mean(),
        # what the attack spent: images attacked, images through the pipeline forward and backward
        **{k: float(out[k]) for k in ("n_attacked", "forward_passes", "backward_passes") if k in out},
    }
    accepted_ = accepted(out, threshold)
    single = np.isfinite(out["score_single"]).all() if threshold is not None else False
    if y is not None:
        return {
            "accuracy": accuracy(out["pred"], y),
            "accuracy_single_pass": accuracy(out["pred_single"], y),
            "accepted": accepted_.mean(),
            "end_to_end_accuracy": ((out["pred"] == y) & accepted_).mean(),  # rejector on: accepted and correct
            "rejected": 1.0 - accepted_.mean(),
            "accepted_wrong": ((out["pred"] != y) & accepted_).mean(),
            "accepted_single_pass": _accepted_single(out, threshold, single),
            **common,
        }
    nan = float("nan")
    if threshold is None:
        return {**{k: nan for k in (*PAPER, *(f"ood_{k}" for k in KEYS))}, "accepted": 1.0,
                **{f"{k}_single_pass": nan for k in SINGLE_PASS}, **common}
    once = _detection(id_out["score_single"], out["score_single"], threshold) if single else {}
    return {
        **_detection(id_out["score"], out["score"], threshold),
        # the same rejector on its single-pass score (the attractor's: Pearson(G(x), x), no iteration)
        **{f"{k}_single_pass": once.get(k, nan) for k in SINGLE_PASS},
        **common,
    }
