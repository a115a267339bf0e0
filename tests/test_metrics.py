import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score, roc_curve

from attractor_bench.metrics import auroc, fpr_at_tpr, ood_metrics


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    id_s = np.round(rng.normal(0.9, 0.05, 500), 2)  # rounding makes ties
    ood_s = np.round(rng.normal(0.75, 0.1, 700), 2)
    return id_s, ood_s


def test_auroc_matches_sklearn(scores):
    id_s, ood_s = scores
    labels = np.r_[np.ones(len(id_s)), np.zeros(len(ood_s))]
    assert auroc(id_s, ood_s) == pytest.approx(roc_auc_score(labels, np.r_[id_s, ood_s]), abs=1e-12)


def test_ood_metrics_match_sklearn(scores):
    id_s, ood_s = scores
    labels = np.r_[np.ones(len(id_s)), np.zeros(len(ood_s))]
    pred = (np.r_[id_s, ood_s] >= 0.8).astype(int)
    m = ood_metrics(id_s, ood_s, 0.8)
    assert m["ood_accuracy"] == pytest.approx(accuracy_score(labels, pred))
    assert m["ood_precision"] == pytest.approx(precision_score(labels, pred))
    assert m["ood_recall"] == pytest.approx(recall_score(labels, pred))
    assert m["accepted"] == pytest.approx(np.mean(ood_s >= 0.8))


def test_fpr_at_95_tpr(scores):
    id_s, ood_s = scores
    threshold = np.sort(id_s)[::-1][int(np.ceil(0.95 * len(id_s))) - 1]
    assert np.mean(id_s >= threshold) >= 0.95
    assert fpr_at_tpr(id_s, ood_s) == pytest.approx(np.mean(ood_s >= threshold))
    fpr, tpr, _ = roc_curve(np.r_[np.ones(len(id_s)), np.zeros(len(ood_s))], np.r_[id_s, ood_s])
    assert fpr_at_tpr(id_s, ood_s) == pytest.approx(fpr[np.argmax(tpr >= 0.95)])
