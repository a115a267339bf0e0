"""Cache keys follow the numbers: they hold the versions of the components that compute them
(attractor_bench/components.py), not source bytes. An edit that changes no number (a comment, a
docstring, code that only orchestrates or renders) reuses every stored cell and model; a bump of
one attack recomputes that attack's cells only; a recipe or preset retrains only when a component
its training requires is bumped.

Some tests edit the package's real source files and restore their bytes afterwards, and run the
suite in a new process, so that the edit is what that process imports."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from typer.testing import CliRunner

from attractor_bench.cache import recipe_key, training_key
from attractor_bench.cli import app
from attractor_bench.defenses import MODELS_INTERNAL
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


def test_comment_docstring_and_orchestration_edits_reuse_every_cell_and_model(micro_run, data_root, tmp_path):
    comment = "\n# an edit that changes no number\n"
    with edited(REPO / "attractor_bench" / "runner.py", "\n\n", comment), \
            edited(REPO / "attractor_bench" / "report.py", "\n\n", comment), \
            edited(REPO / "attractor_bench" / "leaderboard.py", "\n\n", comment), \
            edited(REPO / "attacks" / "__init__.py", "def _fgsm(clf, eps, **kw):\n", "def _fgsm(clf, eps, **kw):\n    # a comment\n"), \
            edited(REPO / "attractor_bench" / "cells.py", '"""Per-sample outputs', '"""Edited: per-sample outputs'), \
            edited(REPO / "attractor_bench" / "training.py", "\n\n", comment):
        meta = _run(micro_run, data_root, tmp_path, subprocess_=True)
    assert meta["cells"]["computed"] == 0 and meta["cells"]["from_store"] == meta["cells"]["total"]
    assert all(m["from_cache"] for m in meta["models"].values())
    assert (tmp_path / "results" / "micro" / "results.csv").read_bytes() == micro_run.csv


def test_bumping_one_attack_recomputes_its_cells_only(micro_run, data_root, tmp_path):
    from attractor_bench.attacks import ATTACKS

    attacks, v = REPO / "attacks" / "__init__.py", ATTACKS["fgsm"].version
    with edited(attacks, f"uses_loss=True, cost=1, version={v},", f"uses_loss=True, cost=1, version={v + 1},"):
        meta = _run(micro_run, data_root, tmp_path, subprocess_=True)
    recomputed = {(c["model"], c["attack"]) for c in meta["cell_seconds"] if not c["stored"]}
    assert recomputed == {("baseline", "fgsm"), ("attractor", "fgsm")}
    n_fgsm = sum(c["attack"] == "fgsm" for c in meta["cell_seconds"])
    assert meta["cells"]["computed"] == n_fgsm == 4  # two models, MNIST and Fashion-MNIST
    assert all(m["from_cache"] for m in meta["models"].values())
    assert meta["components"]["attack.fgsm"] == v + 1


@contextmanager
def bumped(name: str):
    """Component `name` (a declared one) one version up while the block runs."""
    from attractor_bench import components

    saved = components.DECLARED
    components.DECLARED = tuple(dataclasses.replace(c, version=c.version + 1) if c.name == name else c for c in saved)
    components.reset()
    try:
        yield
    finally:
        components.DECLARED = saved
        components.reset()


def test_a_recipe_retrains_only_when_a_component_its_training_requires_is_bumped(monkeypatch):
    from attractor_bench import components

    mlp, dae = MODELS["mlp"], MODELS_INTERNAL["apudae_dae"]
    keys = lambda: (recipe_key(MODELS["mlp"], {"max_epochs": 1}, 0), recipe_key(MODELS_INTERNAL["apudae_dae"], {"max_epochs": 1}, 0))
    before = keys()
    for unrelated in (REPO / "defenses" / "ood.py", REPO / "attractor_bench" / "runner.py", REPO / "models" / "mlp.py"):
        with edited(unrelated, "\n\n", "\n# unrelated edit\n"):
            components.reset()
            assert keys() == before, unrelated
    for unrelated in ("rejector.pearson", "cell", "train.attractor"):
        with bumped(unrelated):
            assert keys() == before, unrelated
    with bumped("train.loop"):  # the shared training loop
        assert keys()[0] != before[0] and keys()[1] != before[1]
    monkeypatch.setitem(MODELS, "mlp", dataclasses.replace(mlp, version=2))
    components.reset()
    assert keys()[0] != before[0] and keys()[1] == before[1]
    components.reset()


def test_an_attractor_network_retrains_when_its_training_is_bumped_only():
    from attractor_bench import components

    cfg = PRESETS["attractor"]
    before = training_key(cfg)
    for unrelated in ("runner.py", "presets.py", "losses.py", "training.py"):  # comments change no key
        with edited(REPO / "attractor_bench" / unrelated, "\n\n", "\n# an edit that changes no number\n"):
            components.reset()
            assert training_key(cfg) == before, unrelated
    for unrelated in ("cell", "defence.attractor", "data"):
        with bumped(unrelated):
            assert training_key(cfg) == before, unrelated
    for training in ("train.attractor", "train.loop", "net.attractor"):
        with bumped(training):
            assert training_key(cfg) != before, training
    components.reset()


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
