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
from attractor_bench.presets import PRESETS

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
    for unrelated in ("runner.py", "presets.py"):  # a preset's values are in its key, not its module's source
        with edited(REPO / "attractor_bench" / unrelated, "\n\n", "\n# unrelated edit\n"):
            assert cfg.key() == before, unrelated
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


def test_every_committed_run_parses_from_its_suite_to_the_training_it_recorded():
    """A preset default that changes (the paper's stopping rule, issue 19) must not silently move a
    committed run onto other weights: each suite that made a committed run still parses to the
    training configuration recorded in its run.json (a field the record predates reads as its
    default then, `best` for early stopping)."""
    import yaml

    from attractor_bench.config import parse_suite

    runs = sorted((REPO / "results").glob("**/run.json"))
    checked = 0
    for path in runs:
        run = json.loads(path.read_text())
        suite_file = REPO / "suites" / Path(run["suite_path"]).name
        suite = parse_suite(yaml.safe_load(suite_file.read_text()), suite_file)
        for model in suite.models:
            recorded = run["models"].get(model.name, {}).get("config")
            if model.train is None or recorded is None:
                continue
            now, then = model.train.to_dict(), {"early_stopping": "best", **recorded}
            while then is not None:  # the warm start's configuration too
                assert {k: now[k] for k in then if k != "init"} == {k: v for k, v in then.items() if k != "init"}, \
                    (path, model.name)
                now, then = now["init"], then["init"] and {"early_stopping": "best", **then["init"]}
            checked += 1
    assert checked >= 15, checked  # mnist_fgsm, leaderboard, mnist_adaptive, the readings and the seeds
