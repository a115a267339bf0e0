"""Issue 36: a suite fails in `validate` or runs to the end. Every contract of docs/plugins.md is
checked before any training (`attractor_bench.contracts.check_suite`: signatures, optional
dependencies, a dry run of each defence and attack on two images through untrained networks), in
`validate` and at the start of `run`; an exception raised by outside code during a run is one
message naming the plugin, its suite key and the exception, and the finished cells stay stored.

Each suite below is tiny (20 test images, a baseline trained on 64 images for one epoch, listed
first so that a run that does not check before training trains it and leaves it in the cache)."""

import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from attractor_bench.cli import app
from attractor_bench.config import load_suite
from conftest import REPO, run_args

runner = CliRunner()
HERE = Path(__file__).resolve().parent
TINY = {"preset": "baseline", "train": {"n_train": 64, "n_val": 64, "max_epochs": 1, "pretrain": False}}
FGSM = {"name": "fgsm", "eps": [0.1], "target": "pipeline"}


def _suite(tmp_path, models=None, attacks=(), name="tiny") -> Path:
    doc = {"name": name, "data": {"n_test": 20, "ood": []}, "models": {"m": TINY, **(models or {})},
           "attacks": [FGSM, *attacks]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# name: (extra models, extra attacks, what the message must say)
ROWS = {
    "model builder without val": (
        {"outside": {"preset": "broken_plugins:builder_without_val", "defence": {"name": "none"}}}, [],
        "models.outside.preset (broken_plugins:builder_without_val): it does not take the keyword argument 'val'"),
    "attack factory without eps": (
        {}, [{"name": "broken_plugins:attack_without_eps", "eps": [0.1]}],
        "attacks[1] (broken_plugins:attack_without_eps): it does not take the keyword argument 'eps'"),
    "defence returning a string": (
        {"m2": {**TINY, "defence": {"name": "broken_plugins:string_defence"}}}, [],
        "models.m2.defence (broken_plugins:string_defence): the factory returned str for model 'm2'; a defence factory "
        "must return an ART preprocessor"),
    "defence missing a required parameter": (
        {"m2": {**TINY, "defence": {"name": "broken_plugins:defence_needing_levels"}}}, [],
        "models.m2.defence (broken_plugins:defence_needing_levels): it requires the argument 'levels', which the runner "
        "does not pass and the suite's params do not give"),
    "autoattack_standard without its extra": (
        {}, [{"name": "autoattack_standard", "eps": [0.1], "target": "pipeline"}],
        "attacks[1] (autoattack_standard) needs the optional dependency 'pyautoattack', which does not import here"),
    "ART ElasticNet (no eps)": (
        {}, [{"name": "art.attacks.evasion:ElasticNet", "eps": [0.1]}],
        "attacks[1] (art.attacks.evasion:ElasticNet): it does not take the keyword argument 'eps' (ART's ElasticNet has "
        "no budget"),
    "ART SpatialTransformation (no eps)": (
        {}, [{"name": "art.attacks.evasion:SpatialTransformation", "eps": [0.1]}],
        "attacks[1] (art.attacks.evasion:SpatialTransformation): it does not take the keyword argument 'eps'"),
    "attack raising in generate": (
        {}, [{"name": "broken_plugins:raises", "eps": [0.1], "target": "pipeline"}],
        "attacks[1] (broken_plugins:raises): generate on model 'm' (target pipeline, eps 0.1) in a dry run on 2 images "
        "through an untrained network raised RuntimeError: no attack above eps -1.0"),
}


@pytest.fixture
def broken(monkeypatch):
    """tests/ on sys.path (broken_plugins), and no pyautoattack for the row that needs it missing."""
    monkeypatch.syspath_prepend(str(HERE))

    def missing_extra():
        monkeypatch.setitem(sys.modules, "pyautoattack", None)  # `import pyautoattack` raises ImportError
    return missing_extra


def _flat(text: str) -> str:
    return " ".join(text.split())


def _one_message(result, message: str, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no uncaught exception: no traceback
    assert message in _flat(result.stderr), result.stderr
    assert "Traceback" not in result.output
    assert sum(line.startswith("Error:") for line in result.stderr.splitlines()) == 1


@pytest.mark.parametrize("row", list(ROWS))
def test_validate_refuses(row, broken, tmp_path):
    models, attacks, message = ROWS[row]
    if "extra" in row:
        broken()
    suite = _suite(tmp_path, models, attacks)
    _one_message(runner.invoke(app, ["validate", str(suite), "--import-plugins"]), message)


@pytest.mark.parametrize("row", [r for r in ROWS if r.startswith("ART") or "extra" in r])
def test_validate_without_import_plugins_checks_what_imports_no_outside_code(row, broken, tmp_path):
    """ART's attack classes and optional dependencies import no outside code: checked by a plain validate."""
    models, attacks, message = ROWS[row]
    if "extra" in row:
        broken()
    _one_message(runner.invoke(app, ["validate", str(_suite(tmp_path, models, attacks))]), message)


@pytest.mark.parametrize("row", list(ROWS))
def test_run_refuses_before_any_training(row, broken, tmp_path, data_root):
    models, attacks, message = ROWS[row]
    if "extra" in row:
        broken()
    suite, cache = _suite(tmp_path, models, attacks), tmp_path / "cache"
    t0 = time.perf_counter()
    result = runner.invoke(app, run_args(suite, data_root, cache, tmp_path / "results"))
    seconds = time.perf_counter() - t0
    _one_message(result, message)
    assert seconds < 30, seconds  # refused in seconds (about one on an idle machine), not after training
    assert not (cache / "models").exists() or not any((cache / "models").iterdir())  # nothing trained
    assert not (tmp_path / "results").exists()


def test_validate_says_what_it_could_not_check_without_the_import(tmp_path):
    suite = _suite(tmp_path, {"m2": {**TINY, "defence": {"name": "broken_plugins:string_defence"}}})
    result = runner.invoke(app, ["validate", str(suite)])
    assert result.exit_code == 0, result.output
    flat = _flat(result.output)
    assert "Their signatures and dry runs need the import: they are checked by validate --import-plugins" in flat
    assert ("not checked, outside code not imported: models.m2.defence (broken_plugins:string_defence) (validate "
            "--import-plugins or run checks them)") in flat
    assert "contracts checked: 1 model and 1 (model, attack) pair dry-run on 2 images" in flat


def test_the_dry_run_leaves_the_random_generators_and_threads_as_they_were(broken, tmp_path):
    """The run's numbers cannot depend on whether the checks ran."""
    from attractor_bench import contracts

    suite = load_suite(_suite(tmp_path, attacks=[{"name": "pgd", "eps": [0.1], "target": "bpda"},
                                                 {"name": "square", "eps": [0.1], "target": "pipeline"}]))
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    before = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state(), torch.get_num_threads()
    checked = contracts.check_suite(suite)
    assert (checked.models, checked.attacks) == (1, 3)
    after = random.getstate(), np.random.get_state()[1], torch.get_rng_state(), torch.get_num_threads()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and torch.equal(before[2], after[2])
    assert before[3] == after[3]


def test_a_plugin_raising_in_the_middle_of_a_run(broken, tmp_path, data_root):
    """The real command in its own process: one message naming the attack, its key and the exception, exit 1,
    no traceback; the cells finished before it stay stored, and the fixed suite resumes from them."""
    failing = {"name": "broken_plugins:raises_above", "label": "noise", "eps": [0.1, 0.3], "params": {"above": 0.2}}
    suite, cache = _suite(tmp_path, attacks=[failing]), tmp_path / "cache"
    env = {"PYTHONPATH": str(HERE), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "attractor_bench.cli", *run_args(suite, data_root, cache, tmp_path / "r")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert ("attacks[1] (broken_plugins:raises_above) raised RuntimeError: no attack above eps 0.2 during the run. The "
            "cells finished so far are stored in the cache") in _flat(done.stderr), done.stderr
    assert not (tmp_path / "r").exists()
    assert len(list((cache / "cells").glob("*.npz"))) == 3  # clean, fgsm at 0.1, noise at 0.1
    fixed = _suite(tmp_path, attacks=[{**failing, "eps": [0.1]}])  # the same cells, without the failing eps
    result = runner.invoke(app, run_args(fixed, data_root, cache, tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "Resumed: 3 of 3 cells came from the store, 0 were computed" in _flat(result.output)


def test_a_plugin_module_that_raises_on_import(tmp_path, data_root, monkeypatch):
    """Outside code fails as early as it can: the module's own code, when imported."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "raising_module.py").write_text("raise ValueError('broken on import')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    suite = _suite(tmp_path, attacks=[{"name": "raising_module:attack", "eps": [0.1]}])
    message = "attacks[1].name: importing module 'raising_module' of 'raising_module:attack' raised ValueError: broken on import"
    for args in (["validate", str(suite), "--import-plugins"], run_args(suite, data_root, tmp_path / "cache", tmp_path / "r")):
        sys.modules.pop("raising_module", None)
        _one_message(runner.invoke(app, args), message)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "r").exists()


def test_the_ood_command_checks_its_models_before_training(broken, tmp_path, data_root):
    """`attractor-bench ood` trains the models of the suites it names: their defences are checked first."""
    _suite(tmp_path, {"m2": {**TINY, "defence": {"name": "broken_plugins:string_defence"}}})
    ood = tmp_path / "ood_tiny.yaml"
    ood.write_text("models_from: [tiny.yaml]\nn_test: 20\nn_ood: 20\nood: [uniform_noise]\n")
    message = "models.m2.defence (broken_plugins:string_defence): the factory returned str for model 'm2'"
    _one_message(runner.invoke(app, ["validate", str(ood)]), message)
    cache = tmp_path / "cache"
    _one_message(runner.invoke(app, ["ood", str(ood), "--data-root", str(data_root), "--cache-dir", str(cache),
                                     "--results-dir", str(tmp_path / "r"), "--no-progress", "--no-download"]), message)
    assert not (cache / "models").exists() or not any((cache / "models").iterdir())


def test_a_plugin_raising_in_a_worker_process(broken, tmp_path, data_root):
    """--workers: the worker names the plugin before the exception is pickled back."""
    failing = {"name": "broken_plugins:raises_above", "label": "noise", "eps": [0.1, 0.3], "params": {"above": 0.2}}
    suite, cache = _suite(tmp_path, attacks=[failing]), tmp_path / "cache"
    result = runner.invoke(app, run_args(suite, data_root, cache, tmp_path / "r", "--workers", "2"))
    _one_message(result, "attacks[1] (broken_plugins:raises_above) raised RuntimeError: no attack above eps 0.2 during "
                         "the run", code=1)
    assert len(list((cache / "cells").glob("*.npz"))) == 3 and not (tmp_path / "r").exists()
