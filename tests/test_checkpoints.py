"""Trainings survive interruption: per-epoch checkpoints, a resume that gives the uninterrupted
training's weights bit for bit, SIGTERM ending a training like Ctrl-C (attractor_bench.checkpoints)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from attractor_bench import checkpoints
from attractor_bench.cache import Context, get_or_fit, get_or_train
from attractor_bench.data import Split
from attractor_bench.files import weights_fingerprint
from attractor_bench.models import MODELS
from attractor_bench.training import TrainConfig


def _split(n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.random((n, 1, 28, 28), dtype=np.float32) * 0.2
    x[np.arange(n), 0, y, y] = 1.0
    return Split(x, y.astype(np.int64))


TRAIN, VAL = _split(96, 0), _split(48, 1)


class Stop(Exception):
    pass


def _fit(recipe: str, cache, params: dict, stop_after: int | None = None):
    """Train `recipe` in `cache`; with `stop_after`, interrupt it after that many epochs (of any stage)."""
    epochs = [0]

    def progress(stage, epoch, max_epochs, value):
        epochs[0] += 1
        if stop_after is not None and epochs[0] >= stop_after:
            raise KeyboardInterrupt

    torch.manual_seed(0)
    ctx = Context(TRAIN, VAL, seed=0, cache_dir=cache, progress=progress)
    module, blob, cached = get_or_fit(MODELS[recipe], params, ctx)
    return weights_fingerprint(module), blob["history"]


@pytest.fixture(autouse=True)
def save_every_epoch(monkeypatch):
    monkeypatch.setattr(checkpoints, "EVERY_SECONDS", 0.0)


@pytest.mark.parametrize("recipe", ["mlp", "stochastic", "pgd_at"])
def test_an_interrupted_training_resumes_to_the_same_weights(tmp_path, recipe):
    """The stochastic model draws its weight noise from torch's global generator, PGD-AT its random
    starts from the batch generator: both are part of the checkpoint."""
    params = {"max_epochs": 4, "patience": 4, "n_train": None}
    if recipe == "pgd_at":
        params.update(steps=2, ramp_epochs=2)
    whole = _fit(recipe, tmp_path / "whole", params)
    with pytest.raises(KeyboardInterrupt):
        _fit(recipe, tmp_path / "cut", params, stop_after=2)
    partial = list((tmp_path / "cut" / "models").glob("*.partial/fit-0.pt"))
    assert len(partial) == 1  # epoch 1 was saved before the interrupt in epoch 2
    assert _fit(recipe, tmp_path / "cut", params) == whole
    assert not list((tmp_path / "cut" / "models").glob("*.partial"))  # removed once the model is cached


def test_a_staged_training_resumes_after_its_finished_stages(tmp_path):
    """The attractor's four fits (three pre-training stages, fine-tuning): an interrupt in the third
    resumes with the first two restored from their files, and the weights equal the uninterrupted ones."""
    cfg = TrainConfig(n_train=64, max_epochs=3, patience=3)
    whole = get_or_train(cfg, TRAIN, VAL, tmp_path / "whole")[0]
    seen = []

    def stop_in_stage_three(stage, epoch, max_epochs, value):
        seen.append(stage)
        if stage.startswith("pretrain 3") and epoch == 2:  # epoch 1 of it is saved
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        get_or_train(cfg, TRAIN, VAL, tmp_path / "cut", stop_in_stage_three)
    files = sorted(p.name for p in (tmp_path / "cut" / "models").glob("*.partial/*.pt"))
    assert files == ["fit-0.pt", "fit-1.pt", "fit-2.pt"]
    resumed = []
    model = get_or_train(cfg, TRAIN, VAL, tmp_path / "cut", lambda s, *a: resumed.append(s))[0]
    assert weights_fingerprint(model) == weights_fingerprint(whole)
    assert "pretrain 1/3" not in resumed and "pretrain 3/3" in resumed  # finished stages are not trained again


def test_a_torn_checkpoint_is_set_aside_and_the_stage_starts_over(tmp_path, capsys):
    params = {"max_epochs": 3, "patience": 3, "n_train": None}
    whole = _fit("mlp", tmp_path / "whole", params)
    with pytest.raises(KeyboardInterrupt):
        _fit("mlp", tmp_path / "cut", params, stop_after=3)
    (path,) = (tmp_path / "cut" / "models").glob("*.partial/fit-0.pt")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the payload
    path.write_bytes(bytes(data))
    assert _fit("mlp", tmp_path / "cut", params) == whole
    assert "set aside" in capsys.readouterr().err


_KILLED = """
import sys, torch
from attractor_bench.cache import Context, get_or_fit
from attractor_bench.files import weights_fingerprint
from attractor_bench.models import MODELS
from attractor_bench import checkpoints
sys.path.insert(0, {tests!r})
from test_checkpoints import TRAIN, VAL
checkpoints.EVERY_SECONDS = 0.0
torch.manual_seed(0)
ctx = Context(TRAIN, VAL, seed=0, cache_dir={cache!r},
              progress=lambda s, e, m, v: print("epoch", e, flush=True))
module = get_or_fit(MODELS["pgd_at"], {{"max_epochs": 6, "patience": 6, "n_train": None, "steps": 2, "ramp_epochs": 2}}, ctx)[0]
print("weights", weights_fingerprint(module), flush=True)
"""


def _script(tmp_path, cache) -> list[str]:
    return [sys.executable, "-c", _KILLED.format(tests=os.path.dirname(__file__), cache=str(cache))]


@pytest.mark.parametrize("sig", [signal.SIGKILL, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_a_training_killed_mid_way_resumes_to_the_same_weights(tmp_path, sig):
    """A real process, killed (SIGKILL: nothing runs after it) or terminated (SIGTERM: unwinds like
    Ctrl-C) after its third epoch; run again, it ends with the uninterrupted training's weights."""
    # the uninterrupted training runs beside the one that is cut (two processes, two cores)
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    whole = subprocess.Popen(_script(tmp_path, tmp_path / "whole"), **pipes)
    proc = subprocess.Popen(_script(tmp_path, tmp_path / "cut"), stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("epoch 3"):
            proc.send_signal(sig)
            break
    proc.wait(timeout=60)
    whole_out, whole_err = whole.communicate(timeout=300)
    assert whole.returncode == 0, whole_err
    assert proc.returncode == -sig if sig == signal.SIGKILL else proc.returncode != 0
    assert list((tmp_path / "cut" / "models").glob("*.partial/fit-0.pt"))
    again = subprocess.run(_script(tmp_path, tmp_path / "cut"), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resuming from checkpoint" in again.stdout + again.stderr
    assert again.stdout.splitlines()[-1] == whole_out.splitlines()[-1]
    assert again.stdout.count("epoch ") < whole_out.count("epoch ")  # it did not start over


@pytest.mark.slow  # two trainings of the micro suite's models through the CLI (about 10 s idle, minutes under load)
def test_the_train_command_trains_once_and_refuses_a_bad_suite_before_training(tmp_path, data_root):
    from typer.testing import CliRunner

    from attractor_bench.cli import app

    runner = CliRunner()
    args = ["train", "suites/micro.yaml", "--data-root", str(data_root), "--cache-dir", str(tmp_path / "cache"),
            "--no-download", "--no-progress"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "2 models ready (2 trained now: baseline, attractor)" in first.output
    second = runner.invoke(app, args)
    assert "2 models ready (0 trained now)" in second.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 0\nmodels: {m: {preset: nosuch}}\nattacks: []\n")
    refused = runner.invoke(app, ["train", "suites/micro.yaml", str(bad), "--cache-dir", str(tmp_path / "other"),
                                  "--no-download"])
    assert refused.exit_code == 2 and "bad.yaml" in refused.output
    assert not (tmp_path / "other" / "models").exists()  # the valid first suite was not trained either
