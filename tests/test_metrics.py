"""The one metrics module (attractor_bench.metrics): pytorch-ood's vocabulary and conventions (outlier
scores, OOD positive), checked against scikit-learn, and the same four metrics in a classification
run's cells as in an OOD run's table."""

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, auc, precision_recall_curve, precision_score, recall_score, roc_auc_score,
                             roc_curve)

from attractor_bench.metrics import KEYS, cell_metrics, detection_at_threshold, ood_metrics


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)  # outlier scores: OOD higher; rounding makes ties
    return np.round(rng.normal(-0.9, 0.05, 500), 2), np.round(rng.normal(-0.75, 0.1, 700), 2)


def test_ood_metrics_are_pytorch_oods_checked_against_sklearn(scores):
    id_s, ood_s = scores
    is_ood, outlier = np.r_[np.zeros(len(id_s)), np.ones(len(ood_s))], np.r_[id_s, ood_s]
    m = ood_metrics(id_s, ood_s)
    assert tuple(m) == KEYS == ("AUROC", "AUPR-IN", "AUPR-OUT", "FPR95TPR")
    assert m["AUROC"] == pytest.approx(roc_auc_score(is_ood, outlier), abs=1e-12)
    p, r, _ = precision_recall_curve(is_ood, outlier)
    assert m["AUPR-OUT"] == pytest.approx(auc(r, p), abs=1e-12)
    p, r, _ = precision_recall_curve(1 - is_ood, -outlier)
    assert m["AUPR-IN"] == pytest.approx(auc(r, p), abs=1e-12)
    fpr, tpr, _ = roc_curve(is_ood, outlier)
    assert m["FPR95TPR"] == pytest.approx(fpr[np.argmax(tpr >= 0.95)])
    # FPR95TPR: the share of ID images rejected at the first threshold that rejects 95% of the OOD images
    t = np.sort(ood_s)[::-1][int(np.ceil(0.95 * len(ood_s))) - 1]
    assert m["FPR95TPR"] == pytest.approx(np.mean(id_s >= t))


def test_threshold_metrics_keep_the_papers_id_positive(scores):
    id_s, ood_s = scores
    labels = np.r_[np.ones(len(id_s)), np.zeros(len(ood_s))]
    pred = (np.r_[id_s, ood_s] <= -0.8).astype(int)  # accepted as ID
    m = detection_at_threshold(id_s, ood_s, -0.8)
    assert m["ood_accuracy"] == pytest.approx(accuracy_score(labels, pred))
    assert m["ood_precision"] == pytest.approx(precision_score(labels, pred))
    assert m["ood_recall"] == pytest.approx(recall_score(labels, pred))
    assert m["accepted"] == pytest.approx(np.mean(ood_s <= -0.8))


def _out(score, single=None):
    n = len(score)
    return {"pred": np.zeros(n, int), "pred_single": np.zeros(n, int), "score": score,
            "score_single": np.full(n, np.nan) if single is None else single, "n_iter": np.zeros(n),
            "delta_linf": np.zeros(n), "delta_l2": np.zeros(n)}


def test_a_classification_cell_writes_the_same_four_metrics_as_an_ood_run(scores):
    id_s, ood_s = scores
    cell = cell_metrics(_out(ood_s, ood_s), _out(id_s, id_s), None, -0.8)
    assert {f"ood_{k}": v for k, v in ood_metrics(id_s, ood_s).items()} == {f"ood_{k}": cell[f"ood_{k}"] for k in KEYS}
    assert cell["ood_AUROC_single_pass"] == cell["ood_AUROC"]
    assert "ood_auroc" not in cell and "ood_fpr_at_95tpr" not in cell  # one name per metric
    no_single = cell_metrics(_out(ood_s), _out(id_s), None, -0.8)  # a rejector without a single-pass score
    assert np.isnan(no_single["ood_AUROC_single_pass"]) and no_single["ood_AUROC"] == cell["ood_AUROC"]
    mnist = cell_metrics(_out(id_s), None, np.zeros(len(id_s), int), -0.8)
    assert mnist["accepted"] == pytest.approx(np.mean(id_s <= -0.8)) and np.isnan(mnist["accepted_single_pass"])
    assert cell_metrics(_out(id_s), None, np.zeros(len(id_s), int), None)["accepted_single_pass"] == 1.0
    without = cell_metrics(_out(ood_s), _out(id_s), None, None)
    assert all(np.isnan(without[f"ood_{k}"]) for k in KEYS) and without["accepted"] == 1.0
