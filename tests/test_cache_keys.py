"""Cache keys follow the numbers: an edit to code that only orchestrates or renders reuses every
stored cell and model; an edit to one attack recomputes that attack's cells only; a recipe
retrains only when a module its training depends on changes.

These tests edit the package's real source files (a comment) and restore their bytes afterwards:
the keys hash the source as it is on disk."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from typer.testing import CliRunner

from attractor_bench.cli import app
from attractor_bench.defences import MODELS_INTERNAL
from attractor_bench.models import MODELS
from attractor_bench.training import PRESETS

from conftest import MICRO, REPO, run_args

runner = CliRunner()


@contextmanager
def edited(path: Path, old: str, new: str):
    """`path` with its first `old` replaced by `new` while the block runs."""
    original = path.read_bytes()
    text = original.decode()
    assert old in text, f"{old!r} not in {path}"
    try:
        path.write_text(text.replace(old, new, 1))
        yield
    finally:
        path.write_bytes(original)


def _run(micro_run, data_root, tmp_path, subprocess_: bool = False) -> dict:
    """The micro suite again on a copy of the uninterrupted run's cache; in a new process when the
    edit is to code this process has loaded (its line numbers would not match the file)."""
    cache = tmp_path / "cache"
    shutil.copytree(micro_run.cache, cache, symlinks=True)
    args = run_args(MICRO, data_root, cache, tmp_path / "results")
    if subprocess_:
        done = subprocess.run([sys.executable, "-m", "attractor_bench.cli", *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    return json.loads((tmp_path / "results" / "micro" / "run.json").read_text())


def test_editing_orchestration_and_rendering_code_reuses_every_cell_and_model(micro_run, data_root, tmp_path):
    comment = "\n# an edit that changes no number\n"
    with edited(REPO / "attractor_bench" / "runner.py", "\n\n", comment), \
            edited(REPO / "attractor_bench" / "report.py", "\n\n", comment), \
            edited(REPO / "attractor_bench" / "leaderboard.py", "\n\n", comment):
        meta = _run(micro_run, data_root, tmp_path)
    assert meta["cells"]["computed"] == 0 and meta["cells"]["from_store"] == meta["cells"]["total"]
    assert all(m["from_cache"] for m in meta["models"].values())
    assert (tmp_path / "results" / "micro" / "results.csv").read_bytes() == micro_run.csv


def test_editing_one_attack_recomputes_its_cells_only(micro_run, data_root, tmp_path):
    attacks = REPO / "attacks" / "__init__.py"
    with edited(attacks, "def _fgsm(clf, eps, **kw):\n", "def _fgsm(clf, eps, **kw):\n    # an edit to FGSM alone\n"):
        meta = _run(micro_run, data_root, tmp_path, subprocess_=True)
    recomputed = {(c["model"], c["attack"]) for c in meta["cell_seconds"] if not c["stored"]}
    assert recomputed == {("baseline", "fgsm"), ("attractor", "fgsm")}
    n_fgsm = sum(c["attack"] == "fgsm" for c in meta["cell_seconds"])
    assert meta["cells"]["computed"] == n_fgsm == 4  # two models, MNIST and Fashion-MNIST
    assert all(m["from_cache"] for m in meta["models"].values())


def test_a_recipe_retrains_only_when_what_its_training_depends_on_changes():
    mlp, dae = MODELS["mlp"], MODELS_INTERNAL["apudae_dae"]
    before = mlp.key({"max_epochs": 1}, 0), dae.key({"max_epochs": 1}, 0)
    for unrelated in (REPO / "defences" / "ood.py", REPO / "attractor_bench" / "runner.py", REPO / "models" / "stochastic.py"):
        with edited(unrelated, "\n\n", "\n# unrelated edit\n"):
            assert (mlp.key({"max_epochs": 1}, 0), dae.key({"max_epochs": 1}, 0)) == before, unrelated
    with edited(REPO / "attractor_bench" / "early_stopping.py", "\n\n", "\n# the shared training loop\n"):
        assert mlp.key({"max_epochs": 1}, 0) != before[0] and dae.key({"max_epochs": 1}, 0) != before[1]
    with edited(REPO / "models" / "mlp.py", "\n\n", "\n# the MLP\n"):
        assert mlp.key({"max_epochs": 1}, 0) != before[0] and dae.key({"max_epochs": 1}, 0) == before[1]


def test_an_attractor_network_retrains_when_its_training_code_changes_only():
    cfg = PRESETS["attractor"]
    before = cfg.key()
    with edited(REPO / "attractor_bench" / "runner.py", "\n\n", "\n# unrelated edit\n"):
        assert cfg.key() == before
    for training_code in ("losses.py", "training.py", "early_stopping.py"):
        with edited(REPO / "attractor_bench" / training_code, "\n\n", "\n# an edit to training\n"):
            assert cfg.key() != before, training_code


def test_retraining_a_transfer_source_recomputes_the_transfer_cells(micro_run, data_root, tmp_path):
    """The transfer cells of the attractor start from examples made on the baseline: another
    baseline (one more epoch) must not reuse them, while the attractor's own cells are reused."""
    cache = tmp_path / "cache"
    shutil.copytree(micro_run.cache, cache, symlinks=True)
    suite = tmp_path / "micro.yaml"
    text = MICRO.read_text()
    old = "train: {n_train: 200, n_val: 100, max_epochs: 1}"
    assert old in text
    suite.write_text(text.replace(old, "train: {n_train: 200, n_val: 100, max_epochs: 2}"))
    result = runner.invoke(app, run_args(suite, data_root, cache, tmp_path / "results"))
    assert result.exit_code == 0, result.output
    cells = json.loads((tmp_path / "results" / "micro" / "run.json").read_text())["cell_seconds"]
    attractor = {(c["attack"], c["dataset"], c["stored"]) for c in cells if c["model"] == "attractor"}
    assert ("transfer_pgd", "mnist", False) in attractor
    assert {s for a, _, s in attractor if a != "transfer_pgd"} == {True}
