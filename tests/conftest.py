import os
from pathlib import Path

import attractor_bench  # noqa: F401  (first: sets MKL_CBWR before torch's first matmul)

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared datasets beside the checkout (or $ATTRACTOR_BENCH_DATA)."""
    root = Path(os.environ.get("ATTRACTOR_BENCH_DATA", REPO.parent / "shared" / "datasets"))
    if not (root / "MNIST" / "raw").is_dir():
        pytest.fail(f"Test data not found at {root}: set ATTRACTOR_BENCH_DATA to a folder in torchvision's layout.")
    return root


@pytest.fixture
def model():
    from attractor_bench import AttractorNet

    torch.manual_seed(0)
    return AttractorNet().eval()


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32)
