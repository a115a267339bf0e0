import pytest
import torch

from attractor_bench import data
from attractor_bench.cache import get_or_train, load_checkpoint, model_key
from attractor_bench.errors import CheckpointError
from attractor_bench.training import TrainConfig

TINY = TrainConfig(weights=(0.988, 0.002, 0.01), n_train=64, n_val=64, max_epochs=1, pretrain=False)


@pytest.fixture(scope="module")
def splits(data_root):
    return data.mnist_train_val(data_root, download=False)


def test_second_call_loads_the_same_model(tmp_path, splits):
    m1, blob, cached = get_or_train(TINY, *splits, cache_dir=tmp_path)
    assert not cached and blob["history"]["finetune"]["best_epoch"] == 1 and blob["train_seconds"] > 0
    m2, blob2, cached = get_or_train(TINY, *splits, cache_dir=tmp_path)
    assert cached and blob2["train_seconds"] == blob["train_seconds"]
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k


def test_key_depends_on_config_and_data(splits):
    train, val = splits
    base = model_key(TINY, train, val)
    assert model_key(TrainConfig(**{**TINY.__dict__, "seed": 1}), train, val) != base
    assert model_key(TrainConfig(**{**TINY.__dict__, "output_activation": "sigmoid"}), train, val) != base
    changed = data.Split(train.x.copy(), train.y)
    changed.x[:, 0, 0, 0] = 0.5  # one pixel of every image, so the selected subset changes too
    assert model_key(TINY, changed, val) != base


def test_corrupt_checkpoint(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or does not match the architecture. Delete it"):
        load_checkpoint(path)


def test_checkpoint_of_another_architecture(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": torch.nn.Linear(3, 3).state_dict(), "config": TINY.to_dict(), "history": {}}, path)
    with pytest.raises(CheckpointError, match="does not match the architecture"):
        load_checkpoint(path)
