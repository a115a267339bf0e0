"""The state-of-the-art reference and the published table the leaderboard places it in: `cnn_at`
is Madry et al.'s MNIST CNN, and the published MNIST L-inf 0.3 rows are those of AutoAttack's own
README (as pyautoattack ships it), number for number."""

import importlib.metadata
import re

import pytest
import torch

from attractor_bench.models import MODELS
from attractor_bench.goals import REFERENCE
from attractor_bench.published import MNIST_LINF_03


def test_cnn_at_is_madrys_mnist_cnn():
    recipe = MODELS["cnn_at"]
    net = recipe.make(**recipe.split(recipe.defaults)[0])
    shapes = [tuple(p.shape) for p in net.parameters()]
    assert shapes == [(32, 1, 5, 5), (32,), (64, 32, 5, 5), (64,), (1024, 7 * 7 * 64), (1024,), (10, 1024), (10,)]
    assert sum(p.numel() for p in net.parameters()) == 3_274_634  # the MNIST challenge model's count
    assert net(torch.zeros(3, 784)).shape == (3, 10)
    assert recipe.defaults["eps"] == 0.3  # trained at the eps of the goal
    assert REFERENCE["model"] == "cnn_at" and REFERENCE["eps"] == 0.3 and REFERENCE["robust"] == 88.50
    # the goal's figure is the published table's standard-AutoAttack number for Madry et al.'s CNN
    assert [aa for paper, *_, aa in MNIST_LINF_03 if paper.startswith("Madry")] == [REFERENCE["robust"]]


def test_the_published_table_is_autoattacks_readme():
    try:
        meta = importlib.metadata.metadata("pyautoattack")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pyautoattack (the autoattack extra) is not installed")
    readme = meta.get_payload() or meta["Description"]
    table = readme.split("MNIST - Linf", 1)[1].split("## CIFAR-10", 1)[0]
    rows = re.findall(r"^\|\*\*(\d+)\*\*\| \[\([^)]*\)\]\(([^)]+)\)\| \*\w+\*\| ([\d.]+)\| ([\d.]+)\| ([\d.]+)\|$", table, re.M)
    assert len(rows) == len(MNIST_LINF_03) == 10
    for (rank, link, clean, reported, aa), (_, ours_link, *ours) in zip(rows, MNIST_LINF_03):
        assert link == ours_link, rank
        assert [float(clean), float(reported), float(aa)] == ours, rank
