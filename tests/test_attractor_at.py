"""`attractor_at` (models/attractor_at.py): the attractor network trained adversarially through the
pipeline the suites defend it with."""

import numpy as np
import pytest
import torch

from attractor_bench.cache import Context, get_or_fit
from attractor_bench.data import Split
from attractor_bench.defenses import AttractorDefence
from attractor_bench.models import MODELS, AttractorNet
from attractor_bench.models import attractor_at as at


def _split(n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    return Split(rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64))


def test_the_trained_pipeline_is_the_suites_defence_then_the_head():
    torch.manual_seed(0)
    model = AttractorNet().eval()
    x = torch.rand(8, 1, 28, 28)
    fixed, logits = at.pipeline(model, x)
    defended = AttractorDefence(model, tol=1e-3, max_iter=1)(x.numpy())[0]
    assert np.allclose(fixed.detach().view_as(x).numpy(), defended, atol=1e-6)
    assert torch.allclose(at.Pipeline(model)(x), model(torch.from_numpy(defended)), atol=1e-5)


def test_training_attacks_at_the_ramped_eps_and_validates_at_the_full_one(tmp_path, monkeypatch):
    calls = []

    def recording(module, x, y, eps, steps, step_size, gen):
        calls.append((round(eps, 6), round(step_size, 6), len(x)))
        return pgd(module, x, y, eps, steps, step_size, gen)

    pgd = at.pgd
    monkeypatch.setattr(at, "pgd", recording)
    ctx = Context(_split(40, 0), _split(12, 1), seed=0, cache_dir=tmp_path)
    params = {"max_epochs": 2, "n_train": None, "ramp_epochs": 2, "steps": 2}
    model, blob, cached = get_or_fit(MODELS["attractor_at"], params, ctx)
    assert isinstance(model, AttractorNet) and not cached
    # 40 images in batches of 128: one step per epoch; epoch 1 at half the eps and step, validation at the full ones
    assert calls == [(0.15, 0.0375, 40), (0.3, 0.075, 12), (0.3, 0.075, 40), (0.3, 0.075, 12)]
    history = blob["history"]
    assert len(history["val_accuracy"]) == 2 and history["best_epoch"] == 2  # only epochs from the ramp's end count
    assert history["val_metric"] == "PGD-2 accuracy of the pipeline at eps 0.3"
    again, _, cached = get_or_fit(MODELS["attractor_at"], params, ctx)
    assert cached and all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_the_loss_pulls_attacked_points_toward_the_clean_image(monkeypatch, tmp_path):
    """With only the reconstruction term (no cross-entropy weight to speak of) one step lowers the
    summed squared error between clip(G(attacked)) and the clean image."""
    torch.manual_seed(0)
    ctx = Context(_split(32, 0), _split(8, 1), seed=0, cache_dir=tmp_path)
    model = AttractorNet()
    x = torch.from_numpy(ctx.train.x).flatten(1)
    before = (at.pipeline(model, x)[0] - x).pow(2).sum(1).mean().item()
    at.fit_attractor_at(model, ctx, max_epochs=3, patience=3, n_train=None, eps=0.0, steps=1, step_size=0.0,
                        ramp_epochs=1, rec_weight=100.0, lr=1e-3)
    after = (at.pipeline(model, x)[0] - x).pow(2).sum(1).mean().item()
    assert after < before


def test_the_recipe_is_registered_with_the_probes_settings():
    train, evaluation = MODELS["attractor_at"].split({})
    assert train == {"max_epochs": 12, "patience": 3, "n_train": None, "eps": 0.3, "steps": 10, "step_size": 0.075,
                     "ramp_epochs": 6, "rec_weight": 0.02} and evaluation == {}
    with pytest.raises(ValueError, match="attractor_at has no parameter 'lr'"):
        MODELS["attractor_at"].split({"lr": 0.1})
