"""Finished cells on disk, so that a run killed or interrupted resumes where it stopped.

A cell (one model, attack, eps and dataset, or an intermediate such as a minimal-perturbation
attack's examples) is stored as `<cache_dir>/cells/<key>.npz` as soon as it is computed: arrays
plus a JSON header, written to a temporary file in the same folder and renamed into place, so a
reader sees the whole file or none. Files are read with `allow_pickle=False`.

Each file also holds `__integrity__`: the store schema it was written with (`STORE_SCHEMA`), the
name, dtype and shape of every array, and a SHA-256 of the header and the arrays. A cell whose
file fails any of that (damaged on disk, edited by hand, arrays of the wrong shape or missing,
written by another schema, or older than the checksums) is treated as absent: it is computed
again and overwritten, and `rejected` counts it (the run's summary says how many). This protects
against corruption and accidental edits; it does not protect against someone who can write the
cache on purpose, since they can write a matching checksum too.

The key (`attractor_bench.cells`) is a hash of everything that determines the cell: the model's
weights, the defence and its parameters, the rejector's threshold, the attack and its parameters,
eps, the images attacked, the cell's seed, and the source of the code that computes it (an edit to
that code invalidates the cells it computes; an edit to code that only orchestrates or renders
does not). Cells are therefore shared between suites that contain the same cell.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from .files import atomic_write, digest, remove_stale_temporaries

CELL_FORMAT = 2  # bump when what a cell means changes (it is part of every cell's key)
STORE_SCHEMA = 1  # the layout of a cell file (`__integrity__`); a file of another schema is recomputed


def _integrity(arrays: dict[str, np.ndarray], header_json: str) -> dict:
    layout = {name: [str(a.dtype), list(a.shape)] for name, a in sorted(arrays.items())}
    chunks = [f"{STORE_SCHEMA}".encode(), header_json.encode(), json.dumps(layout, sort_keys=True).encode()]
    chunks += [np.ascontiguousarray(a).tobytes() for _, a in sorted(arrays.items())]
    return {"schema": STORE_SCHEMA, "arrays": layout, "sha256": digest(*chunks)}


def _savez(path: Path, arrays: dict[str, np.ndarray], header: dict | None) -> None:
    header_json = json.dumps(header or {}, sort_keys=True)
    check = json.dumps(_integrity(arrays, header_json), sort_keys=True)
    with open(path, "wb") as f:  # a file object: np.savez would append .npz to a path
        np.savez(f, __header__=np.array(header_json), __integrity__=np.array(check), **arrays)


def _verified(arrays: dict[str, np.ndarray], header_json: str, check_json: str | None) -> bool:
    if check_json is None:
        return False
    check = json.loads(check_json)
    return check.get("schema") == STORE_SCHEMA and check == _integrity(arrays, header_json)


class CellStore:
    """`get(key)` a stored cell or None; `put(key, arrays, header)` atomically.

    With `fresh=True`, cells stored before this run are ignored (and overwritten when recomputed)."""

    def __init__(self, root: str | os.PathLike, fresh: bool = False):
        self.root = Path(root)
        self.fresh = fresh
        self._written: set[str] = set()
        self.hits = 0
        self.misses = 0
        self.rejected = 0  # stored cells that failed verification (and were therefore recomputed)

    def path(self, k: str) -> Path:
        return self.root / f"{k}.npz"

    def get(self, k: str) -> tuple[dict[str, np.ndarray], dict] | None:
        path = self.path(k)
        if (self.fresh and k not in self._written) or not path.is_file():
            self.misses += 1
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {name: f[name] for name in f.files if name not in ("__header__", "__integrity__")}
                header_json = str(f["__header__"])
                check = str(f["__integrity__"]) if "__integrity__" in f.files else None
                ok = _verified(arrays, header_json, check)
                header = json.loads(header_json)
        except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile,
                json.JSONDecodeError):
            ok = False  # unreadable (disk trouble, a damaged file)
        if not ok:
            self.misses += 1  # compute it again and overwrite
            self.rejected += 1
            return None
        self.hits += 1
        return arrays, header

    def put(self, k: str, arrays: dict[str, np.ndarray], header: dict | None = None) -> None:
        atomic_write(self.path(k), lambda tmp: _savez(tmp, arrays, header))
        self._written.add(k)

    def written(self, k: str) -> bool:
        """Whether this run (this process, or workers marked with `mark_written`) stored cell `k`."""
        return k in self._written

    def mark_written(self, keys) -> None:
        """Cells other processes (workers) wrote for this run: with `fresh`, they count as this run's."""
        self._written.update(keys)

    def remove_stale_temporaries(self) -> None:
        """Delete temporary files left by processes of this host that no longer run (a SIGKILL)."""
        remove_stale_temporaries(self.root)
