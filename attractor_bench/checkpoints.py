"""Trainings that survive interruption: the state of every `early_stopping.fit` saved as it goes,
and resumed from where it stopped.

Within `checkpointed(folder)`, the n-th `fit` of the block keeps its state in `folder/fit-<n>.pt`:
after an epoch (at most every `every_seconds`, and always after the last one) the weights, the
optimizer's state, the state of the batch-order generator and of torch's global generator (the
stochastic model's weight noise, PGD's random starts), the metric so far and the best weights;
when the fit has ended, its final weights and history. A second training of the same model (same
cache key: `attractor_bench.cache`) runs each finished fit again from its file (no step taken) and
continues an unfinished one after its last saved epoch: the final weights are the ones an
uninterrupted training gives, bit for bit (tests/test_checkpoints.py kills a training and checks).

A file is written atomically (`files.atomic_write`), holds the SHA-256 of its payload and is read
with `weights_only=True`; one that fails its check, or that was saved by a fit of another shape
(other tensors, batch size, epochs), is set aside with a message and that fit starts over. The
trainer removes the folder once the trained model is in the cache.

`checkpointed` also turns SIGTERM into KeyboardInterrupt while it runs in the main thread (a
`kill`, a stopped machine's shutdown, a job scheduler), so it ends a training as Ctrl-C does: the
last saved epoch stays for the next call.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

import torch

from .files import atomic_write

EVERY_SECONDS = 30.0  # an epoch's state is saved if this long has passed since the last save
FORMAT = 1


class _Block:
    def __init__(self, folder: Path, every_seconds: float, say):
        self.folder, self.every_seconds, self.say, self.count = folder, every_seconds, say, 0


_BLOCK: ContextVar[_Block | None] = ContextVar("attractor_bench_checkpoints", default=None)


class Interrupted(KeyboardInterrupt):
    """SIGTERM during a checkpointed training, raised where the training is (as Ctrl-C would be)."""


def _on_sigterm(signum, frame):
    raise Interrupted()


@contextmanager
def checkpointed(folder: str | Path, every_seconds: float | None = None, say=print) -> Iterator[Path]:
    """Within the block, every `fit` saves and resumes its state in `folder` (see the module's
    docstring), an epoch's state at most every `every_seconds` (default `EVERY_SECONDS`); `say`
    gets one line when a fit resumes or a file is set aside."""
    folder = Path(folder)
    token = _BLOCK.set(_Block(folder, EVERY_SECONDS if every_seconds is None else every_seconds, say))
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    if main and previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield folder
    finally:
        _BLOCK.reset(token)
        if main and previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)


def discard(folder: str | Path) -> None:
    """Remove a finished training's checkpoints."""
    shutil.rmtree(folder, ignore_errors=True)


class FitCheckpoint:
    """The file of one `fit` in the current `checkpointed` block."""

    def __init__(self, block: _Block, shape: dict):
        self.path = block.folder / f"fit-{block.count}.pt"
        self.block, self.shape, self.saved_at = block, shape, time.monotonic()
        block.count += 1

    def load(self) -> dict | None:
        """The saved state of this fit, or None (no file, or one set aside)."""
        if not self.path.is_file():
            return None
        try:
            outer = torch.load(self.path, map_location="cpu", weights_only=True)
            payload = outer["payload"]
            if hashlib.sha256(payload).hexdigest() != outer["sha256"]:
                raise ValueError("its SHA-256 does not match its content")
            state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
            if state.get("format") != FORMAT or state.get("shape") != self.shape:
                raise ValueError("it was saved by a training of another shape")
        except Exception as e:  # a torn or foreign file: the fit starts over, the file is kept aside
            aside = self.path.with_name(self.path.name + ".bad")
            self.path.replace(aside)
            self.block.say(f"checkpoint {self.path} set aside as {aside.name} ({type(e).__name__}: {e}); "
                           "this stage of the training starts over")
            return None
        what = "finished" if state["finished"] else f"epoch {state['epoch']}"
        self.block.say(f"resuming from checkpoint {self.path.name} ({what})")
        return state

    def due(self, last: bool) -> bool:
        return last or time.monotonic() - self.saved_at >= self.block.every_seconds

    def save(self, state: dict) -> None:
        buf = io.BytesIO()
        torch.save({**state, "format": FORMAT, "shape": self.shape}, buf)
        payload = buf.getvalue()
        blob = {"sha256": hashlib.sha256(payload).hexdigest(), "payload": payload}
        atomic_write(self.path, lambda tmp: torch.save(blob, tmp))
        self.saved_at = time.monotonic()


def current(shape: dict) -> FitCheckpoint | None:
    """The checkpoint of the fit that starts now, or None outside a `checkpointed` block."""
    block = _BLOCK.get()
    return FitCheckpoint(block, shape) if block is not None else None


def rng_states(gen: torch.Generator) -> dict:
    states = {"gen": gen.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(gen: torch.Generator, states: dict) -> None:
    gen.set_state(states["gen"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
