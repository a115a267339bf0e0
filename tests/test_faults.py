"""Runs survive faults: every finished cell is stored at once; a rerun resumes; a SIGKILL mid-cell
or a Ctrl-C loses only the cell in progress; the tables equal an uninterrupted run's, byte for byte.
The uninterrupted run is the session's `micro_run` (suites/micro.yaml); the killed and interrupted runs are separate
processes, so equal bytes also show that the same suite and seed give the same numbers."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attractor_bench.cli import app
from conftest import MICRO, run_args

runner = CliRunner()


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "attractor_bench.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _cells(cache: Path) -> int:
    return len(list((cache / "cells").glob("*.npz")))


def _wait_for_cells(proc: subprocess.Popen, cache: Path, n: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while _cells(cache) < n:
        assert proc.poll() is None, f"the run ended before storing {n} cells: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {n} stored cells after {timeout} s"
        time.sleep(0.05)


def _cache_sharing_models(tmp_path: Path, micro_run) -> Path:
    """An empty cell store beside the uninterrupted run's trained models (no training again)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(micro_run.cache / "models", target_is_directory=True)
    return cache


def test_rerun_takes_every_cell_from_the_store(micro_run, data_root, tmp_path):
    assert micro_run.result.exit_code == 0, micro_run.result.output
    total = json.loads((micro_run.folder / "run.json").read_text())["cells"]["total"]
    again = runner.invoke(app, run_args(MICRO, data_root, micro_run.cache, tmp_path))
    assert again.exit_code == 0, again.output
    assert f"Resumed: {total} of {total} cells came from the store, 0 were computed" in again.output
    assert (tmp_path / "micro" / "results.csv").read_bytes() == micro_run.csv


def test_killed_run_restarts_to_the_uninterrupted_tables(micro_run, data_root, tmp_path):
    """SIGKILL in the middle of a cell on an empty cell store (the models are the uninterrupted run's: a killed
    training's resume is tests/test_checkpoints.py's), restart: the tables are byte-identical to the uninterrupted
    run's."""
    assert micro_run.result.exit_code == 0, micro_run.result.output
    cache, results = _cache_sharing_models(tmp_path, micro_run), tmp_path / "results"
    args = run_args(MICRO, data_root, cache, results)
    proc = _start(args)
    _wait_for_cells(proc, cache, 3)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    stored = _cells(cache)
    assert not results.exists()  # nothing written for the killed run
    restart = subprocess.run([sys.executable, "-m", "attractor_bench.cli", *args], capture_output=True, text=True)
    assert restart.returncode == 0, restart.stderr[-3000:]
    resumed = int(restart.stdout.split("Resumed: ")[1].split(" of ")[0])
    assert resumed >= 3 and resumed <= stored  # the killed run's finished cells were reused, the rest computed
    assert (results / "micro" / "results.csv").read_bytes() == micro_run.csv
    assert not list((cache / "cells").glob(".*.tmp"))  # the killed writer's temporary file was cleaned up


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "Interrupted"),
                                            pytest.param(signal.SIGTERM, 143, "Terminated (SIGTERM)", marks=pytest.mark.slow)])
def test_ctrl_c_or_sigterm_exits_and_writes_no_results(micro_run, data_root, tmp_path, sig, code, word):
    """Ctrl-C (SIGINT) and SIGTERM end a run the same way: a message, exit 130 / 143, no results."""
    cache, results = _cache_sharing_models(tmp_path, micro_run), tmp_path / "results"
    proc = _start(run_args(MICRO, data_root, cache, results))
    _wait_for_cells(proc, cache, 1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err[-3000:]
    assert word in err and "run the same command again to resume" in err
    assert "Traceback" not in err
    assert not results.exists()


@pytest.mark.slow  # a run in a subprocess with two workers (about 20 s idle)
def test_sigterm_to_the_run_alone_ends_it_without_waiting_for_the_cells_in_progress(micro_run, data_root, tmp_path):
    """SIGTERM sent to the run's process only (`kill PID`, not a terminal's Ctrl-C, which reaches every process of
    the group) while a worker is in a cell that would take ten minutes: the run ends at once (143, its message, no
    results) and so does the worker. Before, the pool waited for the cell: with standard AutoAttack, an hour."""
    import yaml

    doc = yaml.safe_load(MICRO.read_text())
    marker = tmp_path / "started"
    doc["attacks"] = [{"name": "broken_plugins:sleeps_above", "label": "slow", "eps": [0.1, 0.3], "ood": False,
                       "params": {"above": 0.2, "marker": str(marker)}}]
    suite = tmp_path / "micro.yaml"  # micro's models: from the uninterrupted run's model cache, no training
    suite.write_text(yaml.safe_dump(doc, sort_keys=False))
    cache, results = _cache_sharing_models(tmp_path, micro_run), tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "attractor_bench.cli", *run_args(suite, data_root, cache, results,
                                                                                   "--workers", "2")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 600
    while not (marker.is_file() and marker.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the slow cell did not start"
        time.sleep(0.1)
    worker = int(marker.read_text())
    assert worker != proc.pid  # the cell runs in a worker process
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert time.monotonic() - start < 60  # not the ten minutes of the cell
    assert "Terminated (SIGTERM)" in err and not results.exists()
    for _ in range(100):  # the worker ends with the run
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"worker {worker} still runs after the run ended")


TINY = """
name: tiny
data: {n_test: 100, ood: []}
models:
  baseline: {preset: baseline, train: {n_train: 200, n_val: 100, max_epochs: 1}}
attacks:
  - {name: fgsm, eps: [0.1]}
"""


def test_fresh_recomputes_every_cell(micro_run, data_root, tmp_path):
    cache = _cache_sharing_models(tmp_path, micro_run)  # the micro suite's baseline: no training
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY)
    tables, cells = [], []
    for extra in ([], [], ["--fresh"]):
        result = runner.invoke(app, run_args(suite, data_root, cache, tmp_path / "results", *extra))
        assert result.exit_code == 0, result.output
        tables.append((tmp_path / "results" / "tiny" / "results.csv").read_bytes())
        cells.append(json.loads((tmp_path / "results" / "tiny" / "run.json").read_text())["cells"])
    assert [c["from_store"] for c in cells] == [0, 2, 0] and [c["computed"] for c in cells] == [2, 0, 2]
    assert tables[0] == tables[1] == tables[2]


def test_a_changed_cell_input_is_not_reused(micro_run, data_root, tmp_path):
    """Cells are keyed by what determines them: another eps, subset or defence setting is computed anew."""
    cache = _cache_sharing_models(tmp_path, micro_run)
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY)
    assert runner.invoke(app, run_args(suite, data_root, cache, tmp_path / "a")).exit_code == 0
    for old, new in [("eps: [0.1]", "eps: [0.2]"), ("n_test: 100", "n_test: 120"),
                     ("attacks:", "defence: {name: attractor, max_iter: 3}\nattacks:")]:
        suite.write_text(TINY.replace(old, new))
        result = runner.invoke(app, run_args(suite, data_root, cache, tmp_path / "b"))
        assert result.exit_code == 0, result.output
        cells = json.loads((tmp_path / "b" / "tiny" / "run.json").read_text())["cells"]
        want_stored = 1 if old.startswith("eps") else 0  # only the clean cell survives a new eps
        assert cells["from_store"] == want_stored, (new, cells)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_cell_file_is_computed_again(micro_run, data_root, tmp_path, damage):
    cache = _cache_sharing_models(tmp_path, micro_run)
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY)
    assert runner.invoke(app, run_args(suite, data_root, cache, tmp_path / "a")).exit_code == 0
    first = (tmp_path / "a" / "tiny" / "results.csv").read_bytes()
    for f in (cache / "cells").glob("*.npz"):
        f.write_bytes(b"junk" if damage == "garbage" else f.read_bytes()[: os.path.getsize(f) // 2])
    result = runner.invoke(app, run_args(suite, data_root, cache, tmp_path / "b"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "tiny" / "results.csv").read_bytes() == first
