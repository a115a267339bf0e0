import os
from pathlib import Path

import attractor_bench  # noqa: F401  (first: sets MKL_CBWR before torch's first matmul)

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from attractor_bench import AttractorNet
from attractor_bench.cli import app

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared datasets beside the checkout (or $ATTRACTOR_BENCH_DATA)."""
    root = Path(os.environ.get("ATTRACTOR_BENCH_DATA", REPO.parent / "shared" / "datasets")).resolve()
    if not (root / "MNIST" / "raw").is_dir():
        pytest.fail(f"Test data not found at {root}: set ATTRACTOR_BENCH_DATA to a folder in torchvision's layout.")
    return root


@pytest.fixture
def model():
    torch.manual_seed(0)
    return AttractorNet().eval()


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32)


SMOKE = REPO / "suites" / "smoke.yaml"
MICRO = REPO / "suites" / "micro.yaml"


def run_args(suite, data_root, cache, results, *extra) -> list[str]:
    """`attractor-bench run` arguments for a test: explicit data root, cache and results folder, offline."""
    return ["run", str(suite), "--data-root", str(data_root), "--cache-dir", str(cache), "--results-dir", str(results),
            "--no-progress", "--no-download", *extra]


def _run_once(tmp, suite, data_root):
    result = CliRunner().invoke(app, run_args(suite, data_root, tmp / "cache", tmp / "results"))
    folder = tmp / "results" / suite.stem
    return SimpleNamespace(tmp=tmp, cache=tmp / "cache", folder=folder, result=result,
                           csv=(folder / "results.csv").read_bytes() if result.exit_code == 0 else None)


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory, data_root):
    """suites/micro.yaml run once, uninterrupted, in this process, on an empty cache (every kind of
    cell in a few seconds). The kill, resume, worker, Dask and cache-key tests compare with it."""
    run = _run_once(tmp_path_factory.mktemp("micro"), MICRO, data_root)
    assert run.result.exit_code == 0, run.result.output
    return run


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, data_root):
    """suites/smoke.yaml run once, uninterrupted, in this process, on an empty cache: its models are
    trained and every cell computed (slow tests only)."""
    return _run_once(tmp_path_factory.mktemp("smoke"), SMOKE, data_root)


def rebuilt_by_report(folder: Path, tmp_path: Path, name: str) -> tuple[bytes, bytes]:
    """A copy of the run `folder` with its file `name` removed, then `attractor-bench report` on the copy:
    (the file as the run wrote it, the file report wrote back)."""
    import shutil

    from typer.testing import CliRunner

    from attractor_bench.cli import app

    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    written = (copy / name).read_bytes()
    (copy / name).unlink()
    result = CliRunner().invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    return written, (copy / name).read_bytes()


def as_current(results: Path) -> Path:
    """Mark every record in a copy of results/ as made with the current component versions, in place.

    Issue 38's fixes bump run-wide components (`cell`, `summary`, the attacks), which stales every
    committed run until the regeneration; tests of how a board renders, sorts and draws need rows,
    so they read the committed numbers as if current (never the committed files themselves)."""
    import json

    from attractor_bench import components

    now = components.current()
    for path in [results / "CARRIED_OVER.json", *results.rglob("summary.json"), *results.rglob("run.json"),
                 *results.rglob("ood.json")]:
        if not path.is_file():
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and isinstance(doc.get("components"), dict):
            doc["components"] = {k: now.get(k, v) for k, v in doc["components"].items()}
            path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return results


def robust_flags(counts: dict[tuple[str, float], int], n: int = 100):
    """A model's robust-flags record (`flags.ModelFlags`) with `counts[(norm, eps)]` robust images of
    n at each (norm, eps), every image correct clean: what the verdict reads."""
    from attractor_bench.flags import ModelFlags, RobustFlags

    ones, idx = np.ones(n, bool), np.arange(n)
    clean = RobustFlags.clean(idx, ones, ones)
    return ModelFlags(clean, [RobustFlags(norm, eps, idx, idx < c, idx < c, np.zeros(n, bool), ("attack",))
                              for (norm, eps), c in counts.items()])
