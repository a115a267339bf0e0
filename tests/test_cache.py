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


def test_warm_start_fine_tunes_from_the_init_model(tmp_path, splits):
    init = TrainConfig(weights=(0.99, 0.0, 0.01), n_train=64, n_val=64, max_epochs=1, pretrain=False)
    cfg = TrainConfig(weights=(0.988, 0.002, 0.01), n_train=64, n_val=64, max_epochs=1, penalty="estimate", init=init)
    model, blob, _ = get_or_train(cfg, *splits, cache_dir=tmp_path)
    assert list(blob["history"]) == ["finetune"]  # no pre-training
    base, _, cached = get_or_train(init, *splits, cache_dir=tmp_path)
    assert cached  # the init model was trained once, on the way, and cached
    assert not torch.equal(model.encoder[0].weight, base.encoder[0].weight)
    # with a zero learning rate, fine-tuning leaves the init's weights as they were: it started from them
    frozen, _, _ = get_or_train(TrainConfig(**{**cfg.__dict__, "finetune_lr": 0.0}), *splits, cache_dir=tmp_path)
    for (k, a), (_, b) in zip(frozen.state_dict().items(), base.state_dict().items()):
        assert torch.equal(a, b), k
    # the key follows the init's config; a config round-trips through its dict
    other = TrainConfig(**{**cfg.__dict__, "init": TrainConfig(**{**init.__dict__, "seed": 5})})
    assert model_key(other, *splits) != model_key(cfg, *splits)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
