import gzip

import numpy as np
import pytest

from attractor_bench import data
from attractor_bench.errors import DataError


def test_datasets_load(data_root):
    for name in data.DATASETS:
        s = data.load(name, "test", data_root, download=False)
        assert s.x.shape == (10_000, 1, 28, 28) and s.x.dtype == np.float32
        assert 0.0 <= s.x.min() and s.x.max() <= 1.0 and s.x.max() > 0.9
        assert sorted(np.unique(s.y)) == list(range(10))


def test_train_validation_split(data_root):
    train, val = data.mnist_train_val(data_root, download=False)
    assert len(train) == 50_000 and len(val) == 10_000
    full = data.load("mnist", "train", data_root, download=False)
    np.testing.assert_array_equal(val.x, full.x[50_000:])


def test_cifar10_bw_is_the_red_channel_resized(data_root):
    import pickle

    import torch
    import torch.nn.functional as F

    with open(data_root / "cifar-10-batches-py" / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="latin1")["data"][:20].reshape(20, 3, 32, 32)
    x = data.load("cifar10_bw", "test", data_root, download=False).x[:20]
    rgb = torch.from_numpy(raw).float() / 255

    def resized(channel, antialias=True):
        return F.interpolate(rgb[:, channel : channel + 1], size=(28, 28), mode="bilinear", antialias=antialias).numpy()

    np.testing.assert_allclose(x, resized(0), atol=1e-6)  # red channel, antialiased bilinear 32 -> 28
    assert np.abs(x - resized(1)).max() > 0.05  # not the green channel
    assert np.abs(x - resized(0, antialias=False)).max() > 1e-3  # not plain bilinear


def test_missing_files_offline_name_folder_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    with pytest.raises(DataError, match=r"MNIST/raw: t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz") as e:
        data.load("mnist", "test", download=False)
    assert str(tmp_path) in str(e.value) and "ATTRACTOR_BENCH_DATA" in str(e.value)
    with pytest.raises(DataError, match=r"cifar-10-batches-py: test_batch"):
        data.load("cifar10_bw", root=tmp_path, download=False)


def test_failed_download_is_a_data_error(tmp_path, monkeypatch):
    def offline(url, dest):
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(DataError, match="download failed: network unreachable"):
        data.load("fashion_mnist", "test", tmp_path, download=True)


def test_truncated_file(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    header = (0x0803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (10, 28, 28))
    with gzip.open(raw / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + bytes(100))
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write((0x0801).to_bytes(4, "big") + (10).to_bytes(4, "big") + bytes(10))
    with pytest.raises(DataError, match="truncated"):
        data.load("mnist", "test", tmp_path, download=False)


def test_download_path_fetches_missing_files(tmp_path, monkeypatch, data_root):
    """The download code end to end, served from a file:// URL instead of the network."""
    monkeypatch.setitem(data._IDX, "mnist", ("MNIST", (data_root / "MNIST" / "raw").as_uri() + "/"))
    fetched = data.load("mnist", "test", tmp_path, download=True)
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]  # no partial files left
    np.testing.assert_array_equal(fetched.x, data.load("mnist", "test", data_root, download=False).x)
