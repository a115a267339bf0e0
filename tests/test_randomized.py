"""Issue 38: a randomized model's images are judged by the majority of `cells.JUDGE_DRAWS` draws, the
same draws in every cell, clean and attacked alike (docs/reliability.md, "Randomized models"), not by
one draw per cell: over ten attacks an image would otherwise count as broken by chance alone.

A toy randomized model (`Dice`) makes the chance explicit: each draw names the image's true class
with the probability written in the image (its second pixel), else one of the nine others at random.
Cells are computed by `cells.compute_cell`, as a run computes them, and read by `robustness.worst_case`."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from attractor_bench import cells
from attractor_bench.attacks import AttackEntry
from attractor_bench.cells import Cell, Defended, Workspace, compute_cell
from attractor_bench.config import AttackSpec, Target
from attractor_bench.robustness import Record, rows, worst_case
from attractor_bench.store import CellStore
from attractor_bench.summary import interval


class Dice(torch.nn.Module):
    """Per draw: the true class (the first pixel, times 10) with probability p (the second pixel),
    else another class at random."""

    randomized = True
    eot_samples = 1

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.flatten(1)
        label, p = (f[:, 0] * 10).round().long(), f[:, 1]
        other = (label + 1 + (torch.rand(len(x)) * 9).long().clamp(max=8)) % 10
        pred = torch.where(torch.rand(len(x)) < p, label, other)
        return torch.nn.functional.one_hot(pred, 10).float() * self.scale


def identity(classifier, eps: float):
    """An "attack" that returns its input unchanged."""
    return SimpleNamespace(generate=lambda x, y=None: x.copy())


def images(p: np.ndarray, seed: int = 0) -> SimpleNamespace:
    """MNIST-shaped images whose draws name their label with probability `p` each."""
    y = np.random.default_rng(seed).integers(0, 10, len(p))
    x = np.zeros((len(p), 1, 28, 28), np.float32)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = y / 10, p
    return SimpleNamespace(x=x, y=y.astype(np.int64))


def outcomes(p: np.ndarray, n_attacks: int, tmp_path) -> tuple[Record, list[Record]]:
    """The clean cell and `n_attacks` identity-attack cells of `Dice` on images with probabilities `p`."""
    data = images(p)
    idx = np.arange(len(p))
    ws = Workspace(SimpleNamespace(seed=0, worst_case="full"), {"mnist": data}, {("mnist", None): idx},
                   {("mnist", None): "toy"}, {"dice": Defended(Dice(), None, None, "dice", "dice")})
    store, entry = CellStore(tmp_path / "cells"), AttackEntry.from_callable(identity)
    specs = [None] + [AttackSpec(f"identity_{i}", "identity", (0.1,), Target.PIPELINE, {}, entry=entry, origin="test")
                      for i in range(n_attacks)]
    records = []
    for spec in specs:
        label = spec.label if spec else "none"
        c = Cell("dice", spec, 0.1 if spec else 0.0, "mnist", f"cell {label}", cells.cell_seed(0, "dice", label))
        out, _ = compute_cell(ws, c, store)
        records.append(Record(label, c.eps, "linf" if spec else "none", "gradient" if spec else "clean", False,
                              "pipeline" if spec else "none", idx, out["pred"] == data.y, np.ones(len(idx), bool)))
    return records[0], records[1:]


def test_ten_identity_attacks_leave_the_worst_case_at_the_clean_accuracy(tmp_path):
    """200 images, each draw right with a probability spread over [0, 1]. Judged on one draw per cell, the
    worst case over ten attacks that change nothing falls to about E[p^11] (~8%), far below the clean
    accuracy; judged by the majority of the same draws in every cell, it stays at the clean accuracy."""
    p = np.linspace(0, 1, 200, dtype=np.float32)
    clean, attacked = outcomes(p, 10, tmp_path)
    (_, _, _, wc), = rows(worst_case(clean, attacked))
    acc, n = float(clean.correct.mean()), len(p)
    lo, hi = interval(acc, n)
    assert lo <= wc["accuracy"] <= hi, (acc, wc["accuracy"])
    assert wc["accuracy"] == acc  # the same draws: an attack that changes nothing changes no judgement
    assert 0.4 < acc < 0.6  # about the images with p above one half


def test_an_image_counts_correct_only_if_most_draws_are(tmp_path):
    """Draws right 30% of the time (the other 70% spread over nine classes, so the true class is still
    the most frequent one) count as wrong; 70% as right: the majority of `JUDGE_DRAWS` draws, not the
    plurality and not one draw."""
    assert cells.JUDGE_DRAWS >= 20
    clean, _ = outcomes(np.repeat(np.float32([0.3, 0.7]), 100), 0, tmp_path)
    low, high = clean.correct[:100].mean(), clean.correct[100:].mean()
    assert low < 0.1 and high > 0.9, (low, high)


def test_deterministic_models_are_judged_by_one_prediction_as_before():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    x = np.random.default_rng(0).random((50, 1, 28, 28), dtype=np.float32)
    out = cells.evaluate(Defended(net, None, None), x)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).argmax(1).numpy()
    assert (out["pred"] == expected).all() and (out["pred_single"] == expected).all()


@pytest.mark.parametrize("n", [1, 7])
def test_the_judgement_leaves_the_callers_generators_alone(n):
    """evaluate draws its judgement with its own seed and puts the global generators back: the cell's
    seeded draws before and after it are those of a run without it."""
    x = images(np.full(n, 0.5, np.float32)).x
    torch.manual_seed(3)
    np.random.seed(3)
    cells.evaluate(Defended(Dice(), None, None), x)
    after = torch.rand(3), np.random.random(3)
    torch.manual_seed(3)
    np.random.seed(3)
    assert torch.equal(after[0], torch.rand(3)) and (after[1] == np.random.random(3)).all()
