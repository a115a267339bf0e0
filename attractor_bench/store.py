"""Finished cells on disk, so that a run killed or interrupted resumes where it stopped.

A cell (one model, attack, eps and dataset, or an intermediate such as a minimal-perturbation
attack's examples) is stored as `<cache_dir>/cells/<key>.npz` as soon as it is computed: arrays
plus a JSON header, written to a temporary file in the same folder and renamed into place, so a
reader sees the whole file or none. Files are read with `allow_pickle=False`.

The key is a hash of everything that determines the cell (`key`): the model's weights, the
defence and its parameters, the rejector's threshold, the attack and its parameters, eps, the
images attacked, the cell's seed, and the source of the modules that compute it (a code change
invalidates stored cells instead of silently reusing them). Cells are therefore shared between
suites that contain the same cell.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import socket
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

CELL_FORMAT = 1  # bump when what a cell file holds changes


def _hash(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(len(c).to_bytes(8, "little"))
        h.update(c)
    return h.hexdigest()


def key(**parts) -> str:
    """A stable hash of `parts` (JSON-able values; tuples count as lists)."""
    return _hash(json.dumps(parts, sort_keys=True, default=str).encode())[:32]


def weights_fingerprint(module: torch.nn.Module) -> str:
    """Hash of a module's parameters and buffers (names, dtypes, shapes and values)."""
    chunks = []
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        chunks += [f"{name}:{t.dtype}:{tuple(t.shape)}".encode(), t.numpy().tobytes()]
    return _hash(*chunks)[:32]


def array_fingerprint(*arrays: np.ndarray | None) -> str:
    return _hash(*(b"none" if a is None else f"{a.dtype}{a.shape}".encode() + np.ascontiguousarray(a).tobytes()
                   for a in arrays))[:32]


def source_fingerprint(*objects: ModuleType | object) -> str:
    """Hash of the source files of the modules defining `objects` (modules, classes or functions)."""
    files = set()
    for obj in objects:
        module = obj if isinstance(obj, ModuleType) else inspect.getmodule(obj)
        path = getattr(module, "__file__", None)
        if path:
            files.add(Path(path).resolve())
    return _hash(*(p.read_bytes() for p in sorted(files)))[:32]


class CellStore:
    """`get(key)` a stored cell or None; `put(key, arrays, header)` atomically.

    With `fresh=True`, cells stored before this run are ignored (and overwritten when recomputed)."""

    def __init__(self, root: str | os.PathLike, fresh: bool = False):
        self.root = Path(root)
        self.fresh = fresh
        self._written: set[str] = set()
        self.hits = 0
        self.misses = 0

    def path(self, k: str) -> Path:
        return self.root / f"{k}.npz"

    def get(self, k: str) -> tuple[dict[str, np.ndarray], dict] | None:
        path = self.path(k)
        if (self.fresh and k not in self._written) or not path.is_file():
            self.misses += 1
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {name: f[name] for name in f.files if name != "__header__"}
                header = json.loads(str(f["__header__"]))
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
            self.misses += 1  # unreadable (disk trouble): compute it again and overwrite
            return None
        self.hits += 1
        return arrays, header

    def put(self, k: str, arrays: dict[str, np.ndarray], header: dict | None = None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{k}~{socket.gethostname()}~{os.getpid()}~", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, __header__=np.array(json.dumps(header or {}, sort_keys=True)), **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path(k))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._written.add(k)

    def mark_written(self, keys) -> None:
        """Cells other processes (workers) wrote for this run: with `fresh`, they count as this run's."""
        self._written.update(keys)

    def remove_stale_temporaries(self) -> None:
        """Delete temporary files left by processes of this host that no longer run (a SIGKILL)."""
        host = socket.gethostname()
        for p in self.root.glob(f".*~{host}~*~*.tmp") if self.root.is_dir() else ():
            try:
                pid = int(p.name.split("~")[2])
                os.kill(pid, 0)
            except ProcessLookupError:
                p.unlink(missing_ok=True)
            except (ValueError, IndexError, PermissionError):
                continue
