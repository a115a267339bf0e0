"""Hostile input, hostile files, full disks (issue 20): every row of the probe table is a regression
test here. What each asserts: no hang, no traceback, no code run from data, no write outside the
results folder, tampering detected, and one message with exit code 1 or 2."""

import errno
import json
import os
import pickle
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from types import SimpleNamespace

from attractor_bench import data, files, parallel, report
from attractor_bench.cli import app
from attractor_bench.errors import ConfigError, DataError
from attractor_bench.plugins import PluginError
from attractor_bench.store import CellStore
from conftest import MICRO, run_args
from test_faults import TINY, _cache_sharing_models, _start

runner = CliRunner()


def _no_traceback(result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def _fails_cleanly(tmp_path, suite: Path, data_root, code: int = 2, *extra) -> str:
    """`run` of `suite` ends with `code`, one message, and nothing written (results or cache)."""
    result = runner.invoke(app, run_args(suite, data_root, tmp_path / "cache", tmp_path / "results", *extra))
    assert result.exit_code == code, result.output
    _no_traceback(result)
    assert sorted(tmp_path.iterdir()) == [suite], "something was written (results, cache, or beside them)"
    return " ".join(result.output.split())


# --- data files never run code ---------------------------------------------------------------

class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # what a crafted pickle does: call any function on load
        return (Path.write_text, (self.marker, "code ran"))


def _crafted_batch(root: Path, marker: Path) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "test_batch").write_bytes(pickle.dumps({"data": _Payload(marker), "labels": [0]}))


def test_a_crafted_cifar_batch_runs_no_code(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    _crafted_batch(tmp_path / "root", marker)
    with pytest.raises(DataError, match="checksum mismatch"):  # refused before it is parsed
        data.load("cifar10_bw", "test", tmp_path / "root", download=False)
    monkeypatch.setenv(data.UNVERIFIED_ENV, "1")  # even when the user vouches for the file
    with pytest.raises(DataError, match=r"not a CIFAR-10 batch \(UnpicklingError: refused global pathlib"):
        data.load("cifar10_bw", "test", tmp_path / "root", download=False)
    assert not marker.exists()


def test_the_restricted_unpickler_reads_the_real_batch_as_pickle_does(data_root):
    raw = (data_root / "cifar-10-batches-py" / "test_batch").read_bytes()
    images, labels = data.read_cifar_batch(Path("test_batch"), raw)
    with open(data_root / "cifar-10-batches-py" / "test_batch", "rb") as f:
        reference = pickle.load(f, encoding="latin1")
    np.testing.assert_array_equal(images, reference["data"])
    np.testing.assert_array_equal(labels, reference["labels"])


def test_a_dataset_file_with_an_unknown_checksum_is_refused(tmp_path, data_root):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        content = (data_root / "MNIST" / "raw" / f).read_bytes()
        (raw / f).write_bytes(content[:-1] + bytes([content[-1] ^ 1]) if "images" in f else content)
    with pytest.raises(DataError) as e:
        data.load("mnist", "test", tmp_path, download=False)
    msg = str(e.value)
    assert "t10k-images-idx3-ubyte.gz: checksum mismatch" in msg and data.PUBLISHED_MD5["MNIST/raw/t10k-images-idx3-ubyte.gz"] in msg
    assert "Delete it" in msg and data.UNVERIFIED_ENV in msg


def test_every_shared_dataset_file_is_verified(data_root):
    """The copies the tests read are the ones KNOWN_COPIES lists (or the published files)."""
    for rel in data.KNOWN_COPIES:
        data._verified(data_root / rel, rel)  # raises on a mismatch


# --- bounded, strict parsing -----------------------------------------------------------------

GOOD = {"name": "tiny", "data": {"n_test": 50, "ood": []},
        "models": {"m": {"preset": "baseline", "train": {"n_train": 64, "n_val": 64, "max_epochs": 1, "pretrain": False}}},
        "attacks": [{"name": "fgsm", "eps": [0.1]}]}
def _bomb(key: str) -> str:
    """A whole suite whose `key` holds nine nested aliases: 9**9 (387 million) values when expanded."""
    levels = "".join(f"  - &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['x'] * 9)}]\n"
                     for p, c in zip([None, *"abcdefgh"], "abcdefghi"))
    return f"{key}:\n{levels}" + yaml.safe_dump({k: v for k, v in GOOD.items() if k in ("models", "attacks")})


def _write(tmp_path, text: str | bytes, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _with(**top) -> str:
    return yaml.safe_dump({**GOOD, **top}, sort_keys=False)


BAD_SUITES = {  # row of the probe table: (suite file text, file name, what the message must say)
    "alias bomb in seed": (_bomb("seed"), "suite.yaml", "expand it beyond 100,000 values"),
    "alias bomb in name": (_bomb("name"), "suite.yaml", "expand it beyond 100,000 values"),
    "recursive alias": ("a: &a [1, *a]\n" + _with(), "suite.yaml", "recursive alias"),
    "suite named ..": (_with(name=".."), "suite.yaml", "suite name '..' must be"),
    "file named ...yaml": (_with(name=None).replace("name: null\n", ""), "...yaml", "suite name '..' must be"),
    "model named ../evil_model": (_with(models={"../evil_model": GOOD["models"]["m"]}), "suite.yaml",
                                  "model name '../evil_model' must be"),
    "attack label with a slash": (_with(attacks=[{"name": "fgsm", "label": "a/b", "eps": [0.1]}]), "suite.yaml",
                                  "attack label 'a/b' must be"),
    "non-UTF-8 file": ("name: caf\xe9\n".encode("latin-1") + _with().encode(), "suite.yaml", "not UTF-8 text (byte 0xe9 on line 1)"),
    "integer model names": (_with(models={1: GOOD["models"]["m"]}), "suite.yaml", "model name 1 is not text"),
    "model names 1 and '1'": ("models:\n  1: {preset: baseline}\n  '1': {preset: baseline}\nattacks: [{name: fgsm, eps: [0.1]}]\n",
                              "suite.yaml", "model name 1 is not text"),
    "seed 2**70": (_with(seed=2**70), "suite.yaml", f"seed: must be <= {2**63 - 1}"),
    "seed -1": (_with(seed=-1), "suite.yaml", "seed: must be >= 0"),
    "duplicate model name": ("models:\n  m: {preset: baseline}\n  m: {preset: attractor}\nattacks: [{name: fgsm, eps: [0.1]}]\n",
                             "suite.yaml", "duplicate key 'm' (first on line 2, again on line 3)"),
    "two attacks lists": ("models: {m: {preset: baseline}}\nattacks: [{name: fgsm, eps: [0.1]}]\nattacks: [{name: pgd, eps: [0.1]}]\n",
                          "suite.yaml", "duplicate key 'attacks' (first on line 2, again on line 3)"),
    "duplicate key deep down": ("models: {m: {preset: baseline, train: {max_epochs: 1, max_epochs: 2}}}\n"
                                "attacks: [{name: fgsm, eps: [0.1]}]\n", "suite.yaml", "duplicate key 'max_epochs'"),
}


@pytest.mark.parametrize("case", list(BAD_SUITES))
def test_a_hostile_suite_is_one_message_and_nothing_written(tmp_path, data_root, case):
    text, name, message = BAD_SUITES[case]
    suite = _write(tmp_path, text, name)
    t0 = time.monotonic()
    out = _fails_cleanly(tmp_path, suite, data_root)
    assert message in out, out
    assert time.monotonic() - t0 < 30  # the alias bomb hung for ever


def test_an_oversized_suite_is_refused_before_parsing(tmp_path, data_root):
    suite = _write(tmp_path, "# " + "x" * (1 << 20) + "\n" + _with())
    assert "bytes; a suite file may have at most 1,048,576" in _fails_cleanly(tmp_path, suite, data_root)


def test_yaml_dump_anchors_of_shared_values_still_load(tmp_path):
    """`yaml.safe_dump` writes anchors for a value used twice: a small expansion is fine."""
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    doc["models"]["m2"] = doc["models"]["m"]
    suite = _write(tmp_path, yaml.safe_dump(doc))
    assert "&id" in suite.read_text()
    assert runner.invoke(app, ["validate", str(suite)]).exit_code == 0


# --- names become paths only inside the results folder ----------------------------------------

def test_inside_refuses_a_path_outside_its_root(tmp_path):
    assert files.inside(tmp_path, "a.png") == tmp_path / "a.png"
    for name in ("..", "../x", "/etc/passwd", "a/../../x"):
        with pytest.raises(ConfigError, match="outside"):
            files.inside(tmp_path, name)


# --- every error is one message: folders and disks ---------------------------------------------

def test_an_unwritable_results_folder_is_refused_before_any_training(tmp_path, data_root):
    suite = _write(tmp_path, _with())
    result = runner.invoke(app, ["run", str(suite), "--data-root", str(data_root), "--cache-dir", str(tmp_path / "cache"),
                                 "--results-dir", "/proc/attractor-bench-results", "--no-progress", "--no-download"])
    assert result.exit_code == 2, result.output
    _no_traceback(result)
    assert "results folder /proc/attractor-bench-results is not writable" in " ".join(result.output.split())
    assert not (tmp_path / "cache").exists()  # nothing trained


@pytest.mark.parametrize("where", ["checkpoint", "cell"])
def test_a_full_disk_is_one_message(tmp_path, data_root, monkeypatch, where):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cache" / where))

    if where == "checkpoint":
        monkeypatch.setattr("attractor_bench.cache._save", full)
    else:
        monkeypatch.setattr(CellStore, "put", full)
    suite = _write(tmp_path, _with())
    result = runner.invoke(app, run_args(suite, data_root, tmp_path / "cache", tmp_path / "results"))
    assert result.exit_code == 1, result.output
    _no_traceback(result)
    out = " ".join(result.output.split())
    assert "No space left on device" in out and "The disk is full" in out
    assert not (tmp_path / "results").exists()


# --- cells are verified ----------------------------------------------------------------------

def test_a_cell_with_wrong_arrays_or_edited_values_is_recomputed(tmp_path):
    store = CellStore(tmp_path)
    arrays = {"pred": np.arange(5), "similarity": np.linspace(0, 1, 5)}
    store.put("k", arrays, {"seconds": 1.0})
    assert store.get("k") is not None and store.rejected == 0
    path = store.path("k")
    with np.load(path) as f:
        stored = {n: f[n] for n in f.files}
    tampered = {
        "edited value": {**stored, "pred": np.array([9, 1, 2, 3, 4])},
        "wrong shape": {**stored, "pred": np.arange(4)},
        "missing array": {k: v for k, v in stored.items() if k != "similarity"},
        "no checksum": {k: v for k, v in stored.items() if k != "__integrity__"},
        "edited header": {**stored, "__header__": np.array(json.dumps({"seconds": 0.0}))},
        "other schema": {**stored, "__integrity__": np.array(str(stored["__integrity__"]).replace('"schema": 1', '"schema": 99'))},
    }
    for i, (what, content) in enumerate(tampered.items(), 1):
        with open(path, "wb") as f:
            np.savez(f, **content)
        assert store.get("k") is None, what
        assert store.rejected == i


@pytest.mark.slow  # two runs (the store's own checks are tested above, in the default run)
def test_a_run_recomputes_an_edited_cell_and_says_so(micro_run, data_root, tmp_path):
    cache = _cache_sharing_models(tmp_path, micro_run)
    suite = _write(tmp_path, TINY, "tiny.yaml")
    assert runner.invoke(app, run_args(suite, data_root, cache, tmp_path / "a")).exit_code == 0
    first = (tmp_path / "a" / "tiny" / "results.csv").read_bytes()
    for p in (cache / "cells").glob("*.npz"):  # a plausible edit: every prediction set to the label 0
        with np.load(p) as f:
            content = {n: f[n] for n in f.files}
        if "pred" in content:
            content["pred"] = np.zeros_like(content["pred"])
            with open(p, "wb") as f:
                np.savez(f, **content)
    result = runner.invoke(app, run_args(suite, data_root, cache, tmp_path / "b"))
    assert result.exit_code == 0, result.output
    assert "stored cells failed verification" in " ".join(result.output.split())
    assert (tmp_path / "b" / "tiny" / "results.csv").read_bytes() == first
    assert json.loads((tmp_path / "b" / "tiny" / "run.json").read_text())["cells"]["failed_verification"] >= 1


# --- results folders appear whole -------------------------------------------------------------

def test_replace_folder_is_all_or_nothing(tmp_path):
    final = tmp_path / "run"
    with files.replace_folder(final, keep=("NOTES.md",)) as tmp:
        (tmp / "a.csv").write_text("1")
        (tmp / "old_figure.png").write_text("x")
    (final / "NOTES.md").write_text("hand-written")
    with pytest.raises(RuntimeError):
        with files.replace_folder(final) as tmp:
            (tmp / "a.csv").write_text("2")
            raise RuntimeError("a failure while the results are written")
    assert (final / "a.csv").read_text() == "1" and (final / "old_figure.png").exists()  # untouched
    with files.replace_folder(final, keep=("NOTES.md",)) as tmp:
        (tmp / "a.csv").write_text("3")
    assert sorted(p.name for p in final.iterdir()) == ["NOTES.md", "a.csv"]  # no file of the previous run
    assert (final / "a.csv").read_text() == "3" and (final / "NOTES.md").read_text() == "hand-written"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary left


@pytest.mark.slow  # two runs (replace_folder itself is tested above, in the default run)
def test_a_failure_while_writing_results_keeps_the_previous_folder(micro_run, data_root, tmp_path, monkeypatch):
    results = tmp_path / "results"
    first = runner.invoke(app, run_args(MICRO, data_root, micro_run.cache, results))
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in (results / "micro").iterdir()}

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", "iterates.png")

    monkeypatch.setattr(report.plots, "iterates", broken)
    again = runner.invoke(app, run_args(MICRO, data_root, micro_run.cache, results))
    assert again.exit_code == 1, again.output
    _no_traceback(again)
    assert {p.name: p.read_bytes() for p in (results / "micro").iterdir()} == before
    assert sorted(p.name for p in results.iterdir()) == ["micro"]


# --- plugins are announced --------------------------------------------------------------------

def _plugin_suite(tmp_path) -> tuple[Path, Path]:
    """A suite naming an outside attack whose module leaves a marker when imported."""
    marker = tmp_path / "imported"
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sneaky_plugin.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('module code ran')\n"
        "def attack(classifier, eps):\n    raise RuntimeError\n")
    doc = {**GOOD, "attacks": [{"name": "sneaky_plugin:attack", "eps": [0.1]}]}
    return _write(tmp_path, yaml.safe_dump(doc)), marker


def test_validate_finds_references_without_importing_them(tmp_path, monkeypatch):
    suite, marker = _plugin_suite(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    result = runner.invoke(app, ["validate", str(suite)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "names outside code: looking up (not importing) module(s) sneaky_plugin" in out and "A suite file is code" in out
    assert not marker.exists()
    missing = _write(tmp_path, suite.read_text().replace("sneaky_plugin:", "no_such_plugin_xyz:"), "missing.yaml")
    result = runner.invoke(app, ["validate", str(missing)])
    assert result.exit_code == 2 and "cannot find module 'no_such_plugin_xyz'" in " ".join(result.output.split())
    assert not marker.exists()
    imported = runner.invoke(app, ["validate", str(suite), "--import-plugins"])
    assert marker.exists()  # imported only when asked to
    # then checked as run checks it before training: this attack raises when built (issue 36)
    assert imported.exit_code == 2 and "attacks[0] (sneaky_plugin:attack): building it" in " ".join(imported.output.split())


def test_no_plugins_refuses_a_suite_with_references(tmp_path, data_root, monkeypatch):
    suite, marker = _plugin_suite(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for command in (run_args(suite, data_root, tmp_path / "cache", tmp_path / "results", "--no-plugins"),
                    ["validate", str(suite), "--no-plugins"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        _no_traceback(result)
        assert "--no-plugins refuses suites that import code" in " ".join(result.output.split())
    assert not marker.exists() and not (tmp_path / "results").exists()


def test_run_announces_the_modules_before_importing_them(tmp_path, data_root, monkeypatch):
    suite, marker = _plugin_suite(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    seen = []

    def stop(ref):
        seen.append(ref)
        raise PluginError("stopped before importing")

    monkeypatch.setattr("attractor_bench.plugins.import_reference", stop)
    result = runner.invoke(app, run_args(suite, data_root, tmp_path / "cache", tmp_path / "results"))
    assert seen == ["sneaky_plugin:attack"] and result.exit_code == 2
    out = " ".join(result.output.split())
    assert out.index("names outside code: importing module(s) sneaky_plugin") < out.index("stopped before importing")


# --- bounded resources -------------------------------------------------------------------------

def test_workers_are_capped_by_the_cores_and_the_jobs(tmp_path, data_root, monkeypatch):
    seen = {}

    def run_suite(*args, workers, **kwargs):
        seen["workers"] = workers
        raise KeyboardInterrupt  # stop here: the cap is what is tested

    monkeypatch.setattr("attractor_bench.runner.run_suite", run_suite)
    suite = _write(tmp_path, _with())
    result = runner.invoke(app, run_args(suite, data_root, tmp_path / "cache", tmp_path / "results", "--workers", "1000"))
    assert f"--workers 1000 capped to {os.cpu_count()}" in " ".join(result.output.split())
    assert seen["workers"] == os.cpu_count()
    spawned = {}
    monkeypatch.setattr(parallel, "_processes", lambda payload, work, root, fresh, workers, finished: spawned.update(n=workers))
    monkeypatch.setattr(parallel, "_payload", lambda ws: b"")
    cells = [SimpleNamespace(key=f"k{i}", group=f"g{i % 3}", after=()) for i in range(6)]
    workspace = SimpleNamespace(light=lambda job: job)  # the part of parallel.CellWorkspace that dispatching reads
    parallel.compute(workspace, cells, SimpleNamespace(root="cells", fresh=False), workers=64)
    assert spawned["n"] == 3  # three jobs: no more processes than that


# --- long runs: SIGTERM, progress and the plan ---------------------------------------------------

def test_sigterm_ends_a_run_like_ctrl_c(tmp_path, data_root, monkeypatch):
    """The handler in this process (a real run in another process, killed by SIGTERM mid-cell:
    tests/test_faults.py::test_ctrl_c_or_sigterm_exits_and_writes_no_results, slow)."""
    monkeypatch.setattr("attractor_bench.runner.run_suite", lambda *a, **k: signal.raise_signal(signal.SIGTERM))
    suite = _write(tmp_path, _with())
    result = runner.invoke(app, run_args(suite, data_root, tmp_path / "cache", tmp_path / "results"))
    assert result.exit_code == 143, result.output
    _no_traceback(result)
    assert "Terminated (SIGTERM): no result files were written" in " ".join(result.output.split())
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the run's only


def test_sigterm_ends_a_training_and_says_it_resumes_from_its_last_epoch(tmp_path, data_root, monkeypatch):
    """`train` has no cells: its message names what it keeps, a training's last saved epoch (a real training
    killed and resumed: tests/test_checkpoints.py::test_a_training_killed_mid_way_resumes_to_the_same_weights)."""
    monkeypatch.setattr("attractor_bench.preparation.train_suite", lambda *a, **k: signal.raise_signal(signal.SIGTERM))
    result = runner.invoke(app, ["train", str(_write(tmp_path, _with())), "--data-root", str(data_root), "--cache-dir",
                                 str(tmp_path / "cache"), "--no-download"])
    assert result.exit_code == 143, result.output
    _no_traceback(result)
    assert "a training in progress at its last saved epoch); run the same command again" in " ".join(result.output.split())


def test_progress_says_the_plan_and_the_totals(tmp_path, data_root):
    suite = _write(tmp_path, yaml.safe_dump({**GOOD, "models": {"m": {"preset": "baseline", "train": {
        "n_train": 64, "n_val": 64, "max_epochs": 2, "patience": 5, "pretrain": False}}}}))
    args = [a for a in run_args(suite, data_root, tmp_path / "cache", tmp_path / "results") if a != "--no-progress"]
    result = runner.invoke(app, args)  # not a terminal: the progress is printed as lines
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "tiny: 1 models to train or load from the cache (m), then 1 attacks on their cells." in out
    assert "train m: fine-tune, epoch 2 of at most 2" in out
    assert "2 cells: 0 in the cell store, 2 to compute." in out


# --- concurrency -----------------------------------------------------------------------------

@pytest.mark.slow  # two full runs in other processes (~40 s)
def test_two_runs_sharing_cache_and_results_give_one_runs_tables(micro_run, data_root, tmp_path):
    cache, results = _cache_sharing_models(tmp_path, micro_run), tmp_path / "results"
    procs = [_start(run_args(MICRO, data_root, cache, results)) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    assert (results / "micro" / "results.csv").read_bytes() == micro_run.csv
    assert sorted(p.name for p in results.iterdir()) == ["micro"]  # no temporary folder left
    again = runner.invoke(app, run_args(MICRO, data_root, cache, tmp_path / "again"))
    assert "failed verification" not in again.output  # no torn cell
    assert (tmp_path / "again" / "micro" / "results.csv").read_bytes() == micro_run.csv
