"""Datasets in torchvision's on-disk layout, read without torchvision.

The data root is, in order: the explicit argument (CLI `--data-root`), the environment variable
`ATTRACTOR_BENCH_DATA`, then `~/.cache/attractor-bench/datasets`. Layout (as torchvision writes it):

    MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    cifar-10-batches-py/test_batch

Missing files are downloaded when `download=True` and the network is reachable; otherwise a
`DataError` names the folder and the files expected.

CIFAR-10-bw (the paper's OOD set): the 10,000 CIFAR-10 test images resized to 28x28 (bilinear,
antialiased, as torchvision's tensor `Resize` does) and reduced to the first (red) channel.
"""

from __future__ import annotations

import gzip
import os
import pickle
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError
from .files import atomic_write

ENV_VAR = "ATTRACTOR_BENCH_DATA"
DATASETS = ("mnist", "fashion_mnist", "cifar10_bw")
# The one place that names the datasets for people: tables, figures and the leaderboard read it.
DISPLAY_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10_bw": "CIFAR-10-bw"}
N_VALIDATION = 10_000  # the last 10,000 MNIST training images: the canonical 50k/10k split

_IDX = {
    "mnist": ("MNIST", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    "fashion_mnist": ("FashionMNIST", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


@dataclass(frozen=True)
class Split:
    """Images as float32 in [0, 1], shape (N, 1, 28, 28), and int64 labels (N,)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def head(self, n: int | None) -> "Split":
        return self if n is None else Split(self.x[:n], self.y[:n])

    def take(self, idx: np.ndarray) -> "Split":
        return Split(self.x[idx], self.y[idx])


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    if root is None:
        root = os.environ.get(ENV_VAR) or Path.home() / ".cache" / "attractor-bench" / "datasets"
    return Path(root).expanduser()


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:  # 0x08: unsigned byte
        raise DataError(f"{path} is not an IDX file of unsigned bytes (magic {magic:#x}); delete it and retry.")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated ({arr.size} values, expected {int(np.prod(shape))}); delete it and retry.")
    return arr.reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _download(url: str, dest: Path) -> None:
    def fetch(tmp: Path) -> None:
        with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)

    atomic_write(dest, fetch)


def _missing(folder: Path, files: list[str], download_hint: bool, err: Exception | None) -> DataError:
    why = f" (download failed: {err})" if err else ""
    how = (
        "Put the files there (torchvision's layout), point --data-root or "
        f"{ENV_VAR} at a folder that has them"
        + ("" if download_hint else ", or run with downloads enabled while online")
        + "."
    )
    return DataError(f"Dataset files missing in {folder}: {', '.join(files)}{why}. {how}")


def _load_idx(name: str, part: str, root: Path, download: bool) -> Split:
    folder_name, base_url = _IDX[name]
    folder = root / folder_name / "raw"
    stems = _IDX_FILES[part]
    paths = [_find(folder, s) for s in stems]
    if None in paths:
        missing = [s + ".gz" for s, p in zip(stems, paths) if p is None]
        if not download:
            raise _missing(folder, missing, False, None)
        try:
            for fname in missing:
                _download(base_url + fname, folder / fname)
        except OSError as e:
            raise _missing(folder, missing, True, e) from e
        paths = [_find(folder, s) for s in stems]
    images, labels = (_read_idx(p) for p in paths)
    x = (images.astype(np.float32) / 255.0)[:, None, :, :]  # (N, 1, 28, 28)
    return Split(x, labels.astype(np.int64))


def _load_cifar10_bw(root: Path, download: bool) -> Split:
    folder = root / _CIFAR_DIR
    path = folder / "test_batch"
    if not path.is_file():
        if not download:
            raise _missing(folder, ["test_batch"], False, None)
        try:
            archive = root / "cifar-10-python.tar.gz"
            _download(_CIFAR_URL, archive)
            with tarfile.open(archive) as tar:
                member = tar.getmember(f"{_CIFAR_DIR}/test_batch")
                tar.extractall(root, members=[member], filter="data")
        except (OSError, tarfile.TarError, KeyError) as e:
            raise _missing(folder, ["test_batch"], True, e) from e
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    rgb = torch.from_numpy(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)).float() / 255.0
    small = torch.nn.functional.interpolate(rgb, size=(28, 28), mode="bilinear", align_corners=False, antialias=True)
    x = small[:, :1].clamp(0.0, 1.0).numpy().astype(np.float32)  # (N, 1, 28, 28): first (red) channel
    return Split(x, np.asarray(batch["labels"], dtype=np.int64))


def load(name: str, part: str = "test", root: str | os.PathLike | None = None, download: bool = True) -> Split:
    """Load `name` (one of DATASETS); `part` is 'train' or 'test' (CIFAR-10-bw has only 'test')."""
    if name not in DATASETS:
        raise DataError(f"Unknown dataset {name!r}; known: {', '.join(DATASETS)}.")
    root_path = resolve_root(root)
    if name == "cifar10_bw":
        if part != "test":
            raise DataError("CIFAR-10-bw is an OOD test set: only part='test' exists.")
        return _load_cifar10_bw(root_path, download)
    return _load_idx(name, part, root_path, download)


def mnist_train_val(root: str | os.PathLike | None = None, download: bool = True) -> tuple[Split, Split]:
    """MNIST training images 0..49,999 for training and 50,000..59,999 for validation (early stopping,
    threshold calibration); the test set is never used for a choice."""
    full = load("mnist", "train", root, download)
    cut = len(full) - N_VALIDATION
    return Split(full.x[:cut], full.y[:cut]), Split(full.x[cut:], full.y[cut:])
