import numpy as np
import pytest
import torch
from torch import nn

from attractor_bench import early_stopping
from attractor_bench.data import Split
from attractor_bench.files import weights_fingerprint

try:  # Context lives in attractor_bench.cache (formerly attractor_bench.recipes)
    from attractor_bench.cache import Context, get_or_fit
except ImportError:
    from attractor_bench.cache import get_or_fit
    from attractor_bench.recipes import Context


def scripted(values, direction="max", patience=2, first_epoch=1, weights=None, max_epochs=None):
    """fit with a step that adds 1 to a weight once per epoch and a validation metric read from `values`."""
    w = torch.zeros(1) if weights is None else weights
    tensor = w if isinstance(w, torch.Tensor) else w.weight
    seen, epochs = iter(values), []

    def step(idx, epoch):
        if not epochs or epochs[-1] != epoch:
            epochs.append(epoch)
            with torch.no_grad():
                tensor.add_(1)

    calls = []
    history = early_stopping.fit(step, lambda: next(seen), [tensor] if isinstance(w, torch.Tensor) else w, n=10,
                                 batch_size=4, gen=torch.Generator().manual_seed(0),
                                 max_epochs=max_epochs or len(values), patience=patience, direction=direction,
                                 metric="val_loss" if direction == "min" else "val_accuracy", first_epoch=first_epoch,
                                 on_epoch=lambda e, v: calls.append((e, v)))
    return history, tensor, calls


def test_patience_stops_and_best_weights_are_restored():
    history, w, calls = scripted([0.1, 0.5, 0.4, 0.3, 0.9, 0.95], patience=2)
    assert history == {"val_accuracy": [0.1, 0.5, 0.4, 0.3], "best_epoch": 2, "best_val_accuracy": 0.5}
    assert calls == [(1, 0.1), (2, 0.5), (3, 0.4), (4, 0.3)]
    assert w.item() == 2  # the weights after epoch 2, not epoch 4


def test_ties_are_not_improvements():
    history, w, _ = scripted([0.5, 0.5, 0.5], patience=2)
    assert history["best_epoch"] == 1 and len(history["val_accuracy"]) == 3 and w.item() == 1


def test_direction_min():
    history, w, _ = scripted([3.0, 1.0, 2.0, 0.5, 0.7], direction="min", patience=5)
    assert history == {"val_loss": [3.0, 1.0, 2.0, 0.5, 0.7], "best_epoch": 4, "best_val_loss": 0.5}
    assert w.item() == 4


def test_first_epoch_and_no_qualifying_epoch():
    history, _, _ = scripted([0.9, 0.1, 0.2, 0.3], patience=1, first_epoch=3)
    assert history["best_epoch"] == 4 and len(history["val_accuracy"]) == 4  # epochs 1-2 neither kept nor counted
    history, w, _ = scripted([0.9, 0.8], patience=1, first_epoch=5)
    assert history == {"val_accuracy": [0.9, 0.8], "best_epoch": 2, "best_val_accuracy": 0.8} and w.item() == 2


def test_module_state_restored_and_modes_set():
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    modes = []
    validate = iter([0.2, 0.7, 0.1, 0.1])
    history = early_stopping.fit(lambda idx, e: modes.append(model.training) or model.weight.data.add_(1),
                                 lambda: modes.append(model.training) or next(validate), model, n=3, batch_size=3,
                                 gen=torch.Generator().manual_seed(0), max_epochs=4, patience=2)
    assert history["best_epoch"] == 2 and model.weight.item() == 2 and not model.training
    assert modes == [True, False] * 4


def test_bad_arguments():
    with pytest.raises(ValueError):
        scripted([0.1], direction="up")
    with pytest.raises(ValueError):
        scripted([], max_epochs=0)


def _split(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.random((n, 1, 28, 28), dtype=np.float32) * 0.2
    x[np.arange(n), 0, y, y] = 1.0  # a learnable pixel per class
    return Split(x, y.astype(np.int64))


@pytest.mark.parametrize("name", ["mlp", "apudae_dae"])
def test_tiny_recipe_trains_reproducibly(tmp_path, name):
    from attractor_bench.defenses import MODELS_INTERNAL
    from attractor_bench.models import MODELS

    recipe = {**MODELS, **MODELS_INTERNAL}[name]
    train, val = _split(96, 0), _split(48, 1)
    runs = []
    for i in range(2):  # two empty caches: trained twice
        torch.manual_seed(0)  # get_or_fit builds the untrained module before it seeds torch
        ctx = Context(train, val, seed=0, cache_dir=tmp_path / str(i))
        module, blob, cached = get_or_fit(recipe, {"max_epochs": 3, "patience": 1}, ctx)
        assert not cached
        runs.append((weights_fingerprint(module), blob["history"]))
    assert runs[0] == runs[1]
    history = runs[0][1]
    metric = "val_loss" if name == "apudae_dae" else "val_accuracy"
    assert 1 <= history["best_epoch"] <= len(history[metric]) <= 3
    assert history[f"best_{metric}"] == history[metric][history["best_epoch"] - 1]


def scripted_paper(values, patience=2, max_epochs=None):
    """`scripted` under the paper's rule."""
    w = torch.zeros(1)
    seen, epochs = iter(values), []

    def step(idx, epoch):
        if not epochs or epochs[-1] != epoch:
            epochs.append(epoch)
            with torch.no_grad():
                w.add_(1)

    history = early_stopping.fit(step, lambda: next(seen), [w], n=10, batch_size=4, gen=torch.Generator().manual_seed(0),
                                 max_epochs=max_epochs or len(values), patience=patience, rule="paper")
    return history, w


def test_the_paper_rule_stops_after_consecutive_falls_and_keeps_the_last_weights():
    # falls at epochs 3 and 4 (0.5 > 0.4 > 0.3): stop at epoch 4, keep epoch 4's weights, not the best (epoch 2)
    history, w = scripted_paper([0.1, 0.5, 0.4, 0.3, 0.9, 0.95], patience=2)
    assert history == {"val_accuracy": [0.1, 0.5, 0.4, 0.3], "best_epoch": 4, "best_val_accuracy": 0.3}
    assert w.item() == 4


def test_the_paper_rule_counts_only_consecutive_falls():
    # 0.5 -> 0.4 falls, 0.4 -> 0.4 does not (a tie resets), 0.4 -> 0.3 -> 0.2 two falls: stop at epoch 5
    history, w = scripted_paper([0.5, 0.4, 0.4, 0.3, 0.2, 0.9, 0.1], patience=2)
    assert history["val_accuracy"] == [0.5, 0.4, 0.4, 0.3, 0.2] and w.item() == 5
    # the best rule with the same patience would have stopped at epoch 3 with epoch 1's weights
    best, wb, _ = scripted([0.5, 0.4, 0.4, 0.3, 0.2, 0.9, 0.1], patience=2)
    assert best["best_epoch"] == 1 and len(best["val_accuracy"]) == 3 and wb.item() == 1


def test_the_paper_rule_runs_to_max_epochs_without_consecutive_falls():
    # single falls (0.2 -> 0.1, 0.3 -> 0.2) never reach patience 2
    history, w = scripted_paper([0.1, 0.2, 0.1, 0.3, 0.2, 0.4], patience=2)
    assert len(history["val_accuracy"]) == 6 and history["best_epoch"] == 6 and w.item() == 6


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="rule must be one of best, paper"):
        early_stopping.fit(lambda i, e: None, lambda: 0.0, [torch.zeros(1)], n=1, batch_size=1,
                           gen=torch.Generator(), max_epochs=1, patience=1, rule="last")
