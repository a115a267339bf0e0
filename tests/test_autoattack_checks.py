"""AutoAttack's own checks as indicators, and the second seed where the margin is thin
(attacks/autoattack_standard.py, `indicators.autoattack_findings`).

Fast: the report's per-image attribution, the threshold, the findings and the verdict on reports
written by hand, the cell's spreading of a report over its images. Slow: standard AutoAttack
itself on a gradient-masked canary (its input is quantized, so every input gradient is zero):
APGD and FAB fail, Square breaks images after them, and the report and the verdict say so."""

import numpy as np
import pytest
import torch
from conftest import robust_flags

from attractor_bench import indicators
from attractor_bench.attacks import ATTACKS
from attractor_bench.attacks.autoattack_standard import ALPHA, NOT_RUN, _broken_by, margin_is_thin
from attractor_bench.cells import NOT_ATTACKED, on_cell_images
from attractor_bench.classifier import make_classifier
from attractor_bench.config import AttackSpec, Target
from attractor_bench.data import load

SQUARE = 3  # its position in the standard version's attacks: apgd-ce, apgd-t, fab-t, square


def aa_spec() -> AttackSpec:
    return AttackSpec("autoattack_standard", "autoattack_standard", (0.1, 0.3), Target.PIPELINE, {})


def report(broken_by: list[int], second: list[int] | None = None, **checks) -> dict[str, np.ndarray]:
    """A stored AutoAttack cell's report (standard version) as a cell holds it."""
    by = np.array(broken_by, np.int8)
    out = {"aa_broken_by": by, "aa_version": np.array(0),
           "aa_second_seed": np.array(second if second is not None else [NOT_RUN] * len(by), np.int8)}
    for c in ("randomized", "probabilities", "dynamic", "zero_gradients", "square", "n_classes"):
        out[f"aa_check_{c}"] = np.array(checks.get(c, 0))
    return out


def findings_of(out: dict, adaptive: bool = False) -> dict:
    idx = np.arange(100, 100 + len(out["aa_broken_by"]))
    return {f.name: f for f in indicators.autoattack_findings(aa_spec(), 0.3, idx, out, adaptive)}


def test_the_report_names_the_first_attack_whose_judged_batch_broke_each_image():
    x = torch.arange(5 * 4, dtype=torch.float32).reshape(5, 4)
    x[4] = x[1]  # the same image twice: both get its outcome
    y = torch.zeros(5, dtype=torch.long)
    judged = [("apgd-ce", x[[0, 1, 2]], y[:3], torch.tensor([0, 1, 0])),  # breaks image 1 (and its copy 4)
              ("apgd-t", x[[0, 2, 3]], y[:3], torch.tensor([0, 0, 0])),
              ("square", x[[0, 2, 3]], y[:3], torch.tensor([5, 0, 0]))]  # breaks image 0
    by = _broken_by(x, judged, ("apgd-ce", "apgd-t", "fab-t", "square"))["aa_broken_by"]
    np.testing.assert_array_equal(by, [SQUARE, 0, -1, -1, 0])


def test_the_margin_is_thin_above_autoattacks_threshold_only():
    n = 1000
    assert ALPHA == 0.002  # AutoAttack's check_square_sr
    at = np.full(n, -1, np.int8)
    at[:2] = 3  # 2 of 1,000 (0.2%): AutoAttack does not warn at its threshold
    assert not margin_is_thin(at)
    at[2] = 1  # 3 of 1,000 by attacks after the first
    assert margin_is_thin(at)
    first_only = np.full(n, -1, np.int8)
    first_only[:500] = 0  # the first attack's breaks say nothing about the margin
    assert not margin_is_thin(first_only)


def test_square_after_the_gradient_attacks_is_raised_with_its_evidence_when_the_second_seed_breaks_more():
    by = [-1] * 14 + [SQUARE] * 3 + [0] * 3
    second = [-1] * 13 + [2] + [NOT_RUN] * 6  # the second seed broke one of the 14 left robust, with FAB-T
    f = findings_of(report(by, second, square=1))
    assert f["autoattack_square"].raised and f["autoattack_square"].count == 3 and f["autoattack_square"].n == 20
    assert f["autoattack_square"].samples == [114, 115, 116]
    assert "broke 1" in f["autoattack_square"].why
    s = f["autoattack_second_seed"]
    assert s.raised and (s.count, s.n, s.samples) == (1, 14, [113])
    v = indicators.verdict(list(f.values()), robust_flags({("linf", 0.3): 13}))
    assert v[0]["potentially_unreliable"] and {i["name"] for i in v[0]["indicators"]} == {"autoattack_square",
                                                                                          "autoattack_second_seed"}


def test_a_second_seed_that_breaks_nothing_leaves_the_point_reliable():
    by = [-1] * 17 + [SQUARE] * 3
    second = [-1] * 17 + [NOT_RUN] * 3
    f = findings_of(report(by, second, square=1))
    assert not f["autoattack_square"].raised and f["autoattack_square"].count == 3  # the evidence stays
    assert not f["autoattack_second_seed"].raised and f["autoattack_second_seed"].n == 17
    v = indicators.verdict(list(f.values()), robust_flags({("linf", 0.3): 17}))
    assert not v[0]["potentially_unreliable"]


def test_autoattacks_other_checks_are_raised_as_it_warns_and_dynamic_is_advisory_beside_adaptive_attacks():
    quiet = findings_of(report([-1] * 10 + [0] * 10))
    assert not any(f.raised for f in quiet.values())
    assert quiet["autoattack_second_seed"].n == 0 and "no second seed needed" in quiet["autoattack_second_seed"].why
    loud = findings_of(report([-1] * 20, zero_gradients=2, randomized=1, probabilities=1, dynamic=1))
    assert all(loud[f"autoattack_{c}"].raised for c in ("zero_gradients", "randomized", "probabilities", "dynamic"))
    assert not findings_of(report([-1] * 20, dynamic=1), adaptive=True)["autoattack_dynamic"].raised


def test_only_the_images_autoattack_attacked_count_in_a_cascade():
    by = [NOT_ATTACKED] * 80 + [-1] * 19 + [SQUARE]  # a cascade gave AutoAttack 20 of 100 images
    f = findings_of(report(by))
    assert f["autoattack_square"].n == 20 and f["autoattack_square"].raised  # 1 of 20 > 0.2%, no second seed ran


def test_a_cell_spreads_a_report_over_its_images():
    attacked = np.array([True, False, True, False])
    out = on_cell_images({"aa_broken_by": np.array([3, -1], np.int8), "aa_version": np.array(0)}, attacked)
    np.testing.assert_array_equal(out["aa_broken_by"], [3, NOT_ATTACKED, -1, NOT_ATTACKED])
    assert out["aa_broken_by"].dtype == np.int8 and out["aa_version"].ndim == 0


class Quantized(torch.nn.Module):
    """A canary: an MLP behind input quantization, whose input gradient is zero everywhere."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * 4) / 4)


@pytest.mark.slow
def test_square_breaking_a_gradient_masked_canary_is_reported_and_raises_the_verdict(data_root):
    torch.manual_seed(0)
    train, test = load("mnist", "train", data_root, download=False), load("mnist", "test", data_root, download=False)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    model, opt = Quantized(net), torch.optim.Adam(net.parameters(), 1e-3)
    x, y = torch.from_numpy(train.x[:5000]), torch.from_numpy(train.y[:5000]).long()
    for _ in range(2):
        for i in range(0, 5000, 100):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i:i + 100]), y[i:i + 100]).backward()
            opt.step()
    clf = make_classifier(model, None, device=torch.device("cpu"))
    xs, ys = test.x[:20], test.y[:20]
    np.random.seed(0)
    attack = ATTACKS["autoattack_standard"].build(clf, 0.1, second_seed=False)
    attack.attack.apgd_targeted.n_iter, attack.attack.fab.n_iter, attack.attack.square.n_queries = 10, 10, 1000
    x_adv = attack.generate(xs, ys)
    rep = attack.report
    assert (rep["aa_broken_by"] == SQUARE).sum() >= 1  # Square broke what the gradient attacks could not
    assert not np.isin(rep["aa_broken_by"], [0, 1, 2]).any()  # zero gradients: APGD and FAB broke nothing
    assert rep["aa_check_square"] >= 1 and rep["aa_check_zero_gradients"] >= 1  # AutoAttack's own warnings
    wrong = clf.predict(x_adv).argmax(1) != ys
    np.testing.assert_array_equal(wrong[rep["aa_broken_by"] >= 0], True)  # the attribution matches the examples
    f = {f.name: f for f in indicators.autoattack_findings(aa_spec(), 0.1, np.arange(20), rep, False)}
    assert f["autoattack_square"].raised and f["autoattack_zero_gradients"].raised
    v = indicators.verdict(list(f.values()), robust_flags({("linf", 0.1): int((~wrong).sum())}))
    assert v[0]["potentially_unreliable"]
