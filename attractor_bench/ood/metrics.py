"""OOD-detection metrics as pytorch-ood's `OODMetrics` names and defines them, computed with
scikit-learn (pytorch-ood imports torchvision at import time, which does not load beside the
CPU build of torch this project pins; the definitions below follow its `metrics.functional`).

pytorch-ood scores are *outlier* scores (higher = more OOD) and OOD is the positive class:

- `AUROC`: area under the ROC curve, OOD positive (ties count half);
- `AUPR-IN`: area under the precision-recall curve with ID positive (lower outlier score = more
  likely ID), by the trapezoidal rule over sklearn's `precision_recall_curve`;
- `AUPR-OUT`: the same with OOD positive;
- `FPR95TPR`: the share of ID images flagged as OOD at the first threshold where 95% of the OOD
  images are flagged.

The rejectors of this package give outlier scores too (`attractor_bench.rejectors`).

`accuracy_coverage(scores, correct)`: the rejector's accuracy/coverage curve (selective
classification): as the threshold T moves, the share of images accepted (score <= T) against the
accuracy on the accepted ones.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score, roc_curve

KEYS = ("AUROC", "AUPR-IN", "AUPR-OUT", "FPR95TPR")


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
        "FPR95TPR": float(fpr[np.searchsorted(tpr, 0.95)]),
    }


def accuracy_coverage(scores: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, accuracy): accepting the k lowest-scoring images for k = 1..n (ties broken by
    index), the share accepted k/n and the accuracy on those k."""
    scores, correct = np.asarray(scores, np.float64), np.asarray(correct, bool)
    order = np.lexsort((np.arange(len(scores)), scores))
    k = np.arange(1, len(scores) + 1)
    return k / len(scores), np.cumsum(correct[order]) / k
