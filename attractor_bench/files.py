"""The two jobs every file this package writes shares: writing atomically, and hashing.

`atomic_write(path, write)` calls `write(tmp_path)` on a temporary file in the destination's
folder, flushes it to disk and renames it into place, so a reader sees the whole file or none
(checkpoints, stored cells, result files, the leaderboard). `atomic_folder(final)` does the same
for a set of files that must appear together, `replace_folder(final)` for a whole folder that
replaces the previous one in one step (a run's results). `inside(root, name)` is the one check
that a path built from a name stays in its folder, and `check_writable` the write probe run
before any work. `digest` is the one hash: of byte chunks, of JSON-able parts (`key`), of arrays,
of a module's weights and of source code.
"""

from __future__ import annotations

import errno
import hashlib
import inspect
import json
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

import numpy as np

from .errors import ConfigError


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Write `path` through `write(tmp)` on a temporary file beside it, then rename it into place.
    The temporary name holds the host and pid (`remove_stale_temporaries` cleans up after a kill)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}~{socket.gethostname()}~{os.getpid()}~", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a written file gets the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # once, at import: os.umask is process-wide, so not read while threads write


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@contextmanager
def atomic_folder(final: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside `final`; on success every file written into it is moved into
    `final` (existing files of other names stay), on error nothing is."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        final.mkdir(exist_ok=True)
        for f in sorted(tmp.iterdir()):
            os.replace(f, final / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def replace_folder(final: str | os.PathLike, keep: tuple[str, ...] = ()) -> Iterator[Path]:
    """A temporary folder beside `final`; on success it becomes `final` in one rename, the previous
    `final` (kept until then) is removed, and its files named in `keep` (hand-written notes the new
    files link to) are carried over. On error `final` is left as it was. A concurrent writer of the
    same folder wins or loses whole: the folder is always one writer's files."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.new~{socket.gethostname()}~{os.getpid()}~", dir=final.parent))
    try:
        yield tmp
        for name in keep:
            if (final / name).is_file() and not (tmp / name).exists():
                shutil.copy2(final / name, tmp / name)
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; a results folder gets the usual permissions
        for _ in range(100):  # another writer may put its folder in place between the two renames
            old = None
            if final.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old~", dir=final.parent))
                try:
                    os.replace(final, old / final.name)
                except FileNotFoundError:
                    pass
            try:
                os.rename(tmp, final)
                break
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            finally:
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def inside(root: str | os.PathLike, *names: str) -> Path:
    """`root / names...`, refused (ConfigError) unless it lies inside `root` (no '..', no absolute name)."""
    root = Path(root)
    path = root.joinpath(*names)
    if not path.resolve().is_relative_to(root.resolve()) or path.resolve() == root.resolve():
        raise ConfigError(f"{'/'.join(names)!r} would be written outside {root}: refused.")
    return path


def check_writable(folder: str | os.PathLike) -> None:
    """Raise OSError unless files can be created in `folder` (or, when it does not exist yet, in its
    nearest existing parent, which must let it be created). Leaves nothing behind."""
    folder = Path(folder).absolute()
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(probe))
    with tempfile.TemporaryFile(dir=probe, prefix=".attractor-bench-write-probe"):
        pass


def remove_stale_temporaries(folder: str | os.PathLike) -> None:
    """Delete temporary files that processes of this host left behind when they were killed."""
    folder, host = Path(folder), socket.gethostname()
    for p in folder.glob(f".*~{host}~*~*.tmp") if folder.is_dir() else ():
        try:
            os.kill(int(p.name.split("~")[2]), 0)
        except ProcessLookupError:
            p.unlink(missing_ok=True)
        except (ValueError, IndexError, PermissionError):
            continue


def digest(*chunks: bytes) -> str:
    """SHA-256 of the chunks, each prefixed by its length (so chunk boundaries count)."""
    h = hashlib.sha256()
    for c in chunks:
        h.update(len(c).to_bytes(8, "little"))
        h.update(c)
    return h.hexdigest()


def key(**parts) -> str:
    """A stable hash of `parts` (JSON-able values; tuples count as lists)."""
    return digest(json.dumps(parts, sort_keys=True, default=str).encode())[:32]


def array_fingerprint(*arrays: np.ndarray | None) -> str:
    return digest(*(b"none" if a is None else f"{a.dtype}{a.shape}".encode() + np.ascontiguousarray(a).tobytes()
                    for a in arrays))[:32]


def weights_fingerprint(module) -> str:
    """Hash of a torch module's parameters and buffers (names, dtypes, shapes and values)."""
    chunks = []
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        chunks += [f"{name}:{t.dtype}:{tuple(t.shape)}".encode(), t.numpy().tobytes()]
    return digest(*chunks)[:32]


def source_fingerprint(*objects: ModuleType | object) -> str:
    """Hash of the source that computes: whole files for modules, the definition itself for a
    function or class (so an edit to one attack's factory changes that attack's key only)."""
    chunks = set()
    for obj in objects:
        if isinstance(obj, ModuleType):
            path = getattr(obj, "__file__", None)
            if path:
                chunks.add(Path(path).read_bytes())
            continue
        try:
            chunks.add(inspect.getsource(obj).encode())
        except (OSError, TypeError):  # no source (a builtin, a C extension): its qualified name
            chunks.add(f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}".encode())
    return digest(*sorted(chunks))[:32]
