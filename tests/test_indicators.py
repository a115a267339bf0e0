"""The reliability verdict: the attack-failure indicators on hand-made inputs, and the self-test,
broken defences (tests/broken_defences.py) in front of a small trained MLP, each marked
potentially unreliable by the indicator meant to catch it, while the undefended MLP and the
adversarially trained model are marked reliable."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, robust_flags, run_args
from typer.testing import CliRunner

from attractor_bench import indicators
from attractor_bench.classifier import make_classifier
from attractor_bench.cli import app
from attractor_bench.indicators import (
    Finding,
    Queries,
    gradient_quality,
    record_findings,
    verdict,
)
from attractor_bench.flags import ModelFlags, RobustFlags
from attractor_bench.robustness import Record, sanity_flags, worst_case

SELFTEST = """\
name: reliability_selftest
seed: 0
data: {n_test: 100, n_ood: 20, ood: [fashion_mnist]}
models:
  mlp: {preset: mlp, defence: {name: none}, params: {n_train: 3000, max_epochs: 3}}
  pgd_at: {preset: pgd_at, defence: {name: none}, params: {n_train: 3000, max_epochs: 3, ramp_epochs: 1, steps: 3, step_size: 0.15}}
  zero_derivative: {preset: mlp, params: {n_train: 3000, max_epochs: 3}, defence: {name: "broken_defences:zero_derivative"}}
  random_gradients: {preset: mlp, params: {n_train: 3000, max_epochs: 3}, defence: {name: "broken_defences:random_gradients"}}
  exploding_gradients: {preset: mlp, params: {n_train: 3000, max_epochs: 3}, defence: {name: "broken_defences:exploding_gradients"}}
  random_noise: {preset: mlp, params: {n_train: 3000, max_epochs: 3}, defence: {name: "broken_defences:random_noise"}}
attacks:
  - {name: fgsm, eps: [0.1, 0.3], target: pipeline, ood: false}
  - {name: pgd, eps: [0.1, 0.3], target: pipeline, ood: false}
  - {name: pgd, label: pgd_bpda, eps: [0.1, 0.3], target: bpda, ood: false}
"""
# what each broken defence breaks, and the indicators meant to see it
BROKEN = {"zero_derivative": {"unavailable_gradients", "zero_gradients", "unconstrained_failure"},
          "random_gradients": {"noisy_gradients"},
          "exploding_gradients": {"noisy_gradients", "gradient_scale"},
          "random_noise": {"randomized_forward"}}


@pytest.fixture(scope="module")
def selftest(tmp_path_factory, data_root):
    tmp = tmp_path_factory.mktemp("selftest")
    (tmp / "selftest.yaml").write_text(SELFTEST)
    result = CliRunner().invoke(app, run_args(tmp / "selftest.yaml", data_root, tmp / "cache", tmp / "results"))
    assert result.exit_code == 0, result.output
    folder = tmp / "results" / "reliability_selftest"
    return pd.read_csv(folder / "results.csv"), json.loads((folder / "summary.json").read_text()), folder


def test_every_broken_defence_is_caught_and_no_working_model_is_flagged(selftest):
    t, summary, _ = selftest
    verdicts = t[t.kind == "verdict"].groupby("model").value.max()
    assert verdicts["mlp"] == 0 and verdicts["pgd_at"] == 0  # no false alarm
    for name in BROKEN:
        assert verdicts[name] == 1, name
    raised = t[(t.kind == "indicator") & t.metric.str.endswith("_raised") & (t.value == 1)]
    for name, meant in BROKEN.items():
        got = {m.removesuffix("_raised") for m in raised[raised.model == name].metric}
        assert got & meant, (name, got)  # caught by an indicator that looks for what it breaks
    assert raised[raised.model.isin(["mlp", "pgd_at"])].empty
    models = {m["name"]: m for m in summary["models"]}
    assert models["mlp"]["verdict"]["potentially_unreliable"] is False
    zd = models["zero_derivative"]["verdict"]
    assert zd["potentially_unreliable"] is True and any(r.startswith("unavailable_gradients (fgsm, linf eps 0.1)")
                                                        for r in zd["reasons"])
    assert all(e["indicators"] for e in zd["by_eps"] if e["potentially_unreliable"])  # evidence with every verdict


def test_the_verdict_is_in_the_readme_and_the_cli_table(selftest):
    _, _, folder = selftest
    readme = (folder / "README.md").read_text()
    assert "### Reliability verdict" in readme
    assert "| `zero_derivative` | **potentially unreliable** (" in readme and "| `mlp` | reliable (" in readme
    assert "`unavailable_gradients` (`fgsm`, L-inf eps 0.1, 16 of 16)" in readme


def _linear(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()


def test_gradient_quality_agrees_with_finite_differences_per_image():
    """A faithful gradient gives cosine ~1 and slope ~1 for every batch size (ART's loss is a batch
    mean: the probe rescales it per image)."""
    clf = make_classifier(_linear())
    rng = np.random.default_rng(0)
    for n in (1, 7):
        x = rng.uniform(0.2, 0.8, (n, 1, 28, 28)).astype(np.float32)
        y = rng.integers(0, 10, n)
        q = gradient_quality(clf, x, y, seed=1)
        assert np.all(q["cosine"] > 0.99) and np.allclose(q["slope"], 1.0, atol=0.02)
        assert not q["zero"].any()


def test_gradient_quality_sees_a_wrong_gradient():
    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return -g  # the opposite direction

    net = _linear()
    wrapped = torch.nn.Sequential(type("W", (torch.nn.Module,), {"forward": lambda self, x: Wrong.apply(x)})(), net)
    x = np.random.default_rng(0).uniform(0.2, 0.8, (4, 1, 28, 28)).astype(np.float32)
    q = gradient_quality(make_classifier(wrapped), x, np.arange(4), seed=1)
    assert np.all(q["cosine"] < -0.99) and np.allclose(q["slope"], -1.0, atol=0.02)


def test_queries_see_a_misclassified_point_inside_the_ball_only():
    clf = make_classifier(_linear())
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0.3, 0.7, (3, 1, 28, 28)).astype(np.float32)
    y = clf.predict(x0).argmax(1)
    other = rng.uniform(0, 1, (200, 1, 28, 28)).astype(np.float32)
    wrong = other[clf.predict(other).argmax(1) != y[0]][:1]  # some image the model gives another class
    inside = np.clip(x0[:1] + np.clip(wrong - x0[:1], -0.5, 0.5), 0, 1)  # toward it, inside the 0.5 ball
    assert clf.predict(inside).argmax(1)[0] != y[0] or pytest.skip("the point inside the ball is classified as x0")
    with Queries(clf, x0, y, 0.5, "linf") as q:
        clf.predict(np.concatenate([x0, inside]))
    assert q.found.tolist() == [True, False, False]
    with Queries(clf, x0, y, 0.1, "linf") as q:  # the same point is outside the 0.1 ball
        clf.loss_gradient(inside, np.eye(10, dtype=np.float32)[y[:1]])
    assert not q.found.any() and q.asked == 0


def rec(label, correct, eps, idx=None, cascade=False):
    idx = np.arange(len(correct)) if idx is None else np.asarray(idx)
    return Record(label, eps, "linf", "gradient", False, "pipeline", idx, np.asarray(correct, bool),
                  np.ones(len(idx), bool), cascade)


def test_accuracy_rising_with_eps_is_raised_beyond_one_image():
    clean = Record("none", 0.0, "none", "clean", False, "none", np.arange(10), np.ones(10, bool), np.ones(10, bool))
    a = [rec("pgd", [1] * 5 + [0] * 5, 0.1), rec("pgd", [1] * 8 + [0] * 2, 0.2), rec("pgd", [1] * 9 + [0], 0.3)]
    f = {(x.attack, x.eps): x for x in record_findings(worst_case(clean, a), a, False, {}) if x.name == "non_monotone"}
    assert f[("pgd", 0.2)].raised and f[("pgd", 0.2)].count == 3 and f[("pgd", 0.2)].samples == [5, 6, 7]
    assert not f[("pgd", 0.3)].raised  # one image: within the noise floor
    assert f[("worst_case_linf", 0.2)].raised


def test_nothing_robust_means_nothing_to_overstate():
    bad = Finding("silent_success", "pgd", "linf", 0.3, 1, 16, True, [3], "x")
    model = Finding("probability_output", "model_checks", None, None, 1, 1, True, [], "y")
    out = {(v["norm"], v["eps"]): v for v in verdict([bad, model], robust_flags({("linf", 0.1): 5, ("linf", 0.3): 0}))}
    assert out[("linf", 0.1)]["potentially_unreliable"] and [i["name"] for i in out[("linf", 0.1)]["indicators"]] == [
        "probability_output"]
    assert not out[("linf", 0.3)]["potentially_unreliable"] and out[("linf", 0.3)]["note"]


def test_the_detection_bound_follows_tramer():
    clean = Record("none", 0.0, "none", "clean", False, "none", np.arange(10), np.ones(10, bool), np.ones(10, bool))
    attacked = Record("a", 0.6, "linf", "gradient", False, "pipeline", np.arange(10), np.zeros(10, bool),
                      np.array([0] * 10, bool))  # every image wrong, every one rejected: a perfect detector at 0.6
    f, = [x for x in record_findings(worst_case(clean, [attacked]), [attacked], True, {("linf", 0.3): 0.9634}) if x.name == "detection_bound"]
    assert f.raised and f.value == 1.0
    assert not [x for x in record_findings(worst_case(clean, [attacked]), [attacked], True, {}) if x.name == "detection_bound"]  # no number at 0.3


def test_a_sanity_flag_is_a_finding_of_the_eps_its_explanation_names():
    clean = Record("none", 0.0, "none", "clean", False, "none", np.arange(4), np.ones(4, bool), np.ones(4, bool))
    fgsm = Record("fgsm", 0.1, "linf", "gradient", True, "pipeline", np.arange(4), np.array([0, 0, 1, 1], bool),
                  np.ones(4, bool))
    pgd = [rec("pgd", [1, 1, 1, 1], 0.1), rec("pgd", [0, 0, 0, 0], 0.3)]
    fgsm3 = Record("fgsm", 0.3, "linf", "gradient", True, "pipeline", np.arange(4), np.zeros(4, bool), np.ones(4, bool))
    flags, why = sanity_flags(worst_case(clean, [fgsm, fgsm3, *pgd]), [fgsm, fgsm3, *pgd], {})
    assert flags["flag_single_step_beats_iterative"] == 1
    f = {x.eps: x for x in indicators.sanity_findings(flags, why, [fgsm, fgsm3, *pgd])
         if x.name == "flag_single_step_beats_iterative"}
    assert f[0.1].raised and "(linf eps 0.1)" in f[0.1].why and not f[0.3].raised


def test_every_indicator_is_documented_and_named_once(selftest):
    t, _, _ = selftest
    names = indicators.CELL_INDICATORS + indicators.AUTOATTACK_CHECKS + indicators.MODEL_CHECKS + indicators.RECORD_CHECKS
    assert len(set(names)) == len(names)
    seen = {m.removesuffix("_raised") for m in t[t.kind == "indicator"].metric if m.endswith("_raised")}
    assert seen <= set(names) and {"silent_success", "incomplete_optimisation", "noisy_gradients", "randomized_forward",
                                    "unconstrained_failure", "non_monotone"} <= seen
    doc = (REPO / "docs" / "reliability.md").read_text()
    assert all(f"`{n}`" in doc for n in names)


def _probed_images(n_images: int, robust: np.ndarray, eps: float, monkeypatch) -> np.ndarray:
    """The images `aggregate.probes` hands to the probes of one cell (pgd at `eps`) when `robust` of
    `n_images` are robust in the worst case (the probes themselves are stubbed out)."""
    from types import SimpleNamespace as NS

    from attractor_bench import aggregate
    from attractor_bench.config import Target

    seen = []
    monkeypatch.setattr(indicators, "probe_cell", lambda attack, eps, d, x, y, *a: seen.append(x[:, 0, 0, 0]) or {})
    monkeypatch.setattr(indicators, "cell_findings", lambda *a: [])
    x = np.arange(n_images, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 28, 28), np.float32)
    ws = NS(suite=NS(seed=0), prepared={"m": NS(model=NS())}, sets={"mnist": NS(x=x, y=np.zeros(n_images, np.int64))},
            indices=lambda ds, a: np.arange(n_images))
    attack = NS(label="pgd", entry=NS(norm="linf"), target=Target.PIPELINE, source=None)
    cells = [(attack, eps, [NS(dataset="mnist", key=f"cell {eps}")])]
    idx, ones = np.arange(n_images), np.ones(n_images, bool)
    wc = ModelFlags(RobustFlags.clean(idx, ones, ones), [RobustFlags("linf", eps, idx, robust, robust, ~ones, ("pgd",))])
    store = NS(get=lambda k: None, put=lambda k, v: None)
    aggregate.probes(ws, "m", cells, wc, store, NS(line=lambda s: None))
    return seen[0].astype(int)


def test_probes_take_a_seeded_random_sample_of_the_robust_images(monkeypatch):
    """Issue 38: the probed images are a sample of all the robust images (seeded per cell, so a rerun
    probes the same ones), not the first PROBE_IMAGES by index: at small eps those would be the first
    few hundred test images whatever the cell."""
    robust = np.ones(9000, bool)
    robust[::7] = False
    first = _probed_images(9000, robust, 0.1, monkeypatch)
    assert len(first) == indicators.PROBE_IMAGES == len(set(first)) and robust[first].all()
    assert list(first) == sorted(first)
    assert first.max() > 2 * indicators.PROBE_IMAGES  # not the first robust images by index
    assert (first >= 4500).any() and (first < 4500).any()  # spread over the set
    assert list(_probed_images(9000, robust, 0.1, monkeypatch)) == list(first)  # reproducible
    assert list(_probed_images(9000, robust, 0.3, monkeypatch)) != list(first)  # another cell, another sample
    few = np.zeros(9000, bool)
    few[[5, 900, 4000]] = True  # fewer robust images than PROBE_IMAGES: all of them
    assert list(_probed_images(9000, few, 0.1, monkeypatch)) == [5, 900, 4000]
