"""The comparison defences and models (issue 5), checked against oracles: the local
reparameterization against explicit weight draws, the KL term against torch.distributions, EoT
gradients against averaged single draws, the purifiers' contracts, and the recipe cache."""

import numpy as np
import pytest
import torch
from torch import nn

from attractor_bench.cache import Context, get_or_fit
from attractor_bench.classifier import CheckedClassifier, EoTClassifier, make_classifier
from attractor_bench.data import Split
from attractor_bench.models import MODELS
from attractor_bench.defenses import DEFENCES, APuDAE, FeatureDAE
from attractor_bench.defenses.apudae import reconstruction_error
from attractor_bench.defenses.dae import DAE
from attractor_bench.models.mlp import MLP, pgd
from attractor_bench.models.stochastic import StochasticLinear, StochasticMLP
from attractor_bench.recipes import Recipe


def _split(n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    return Split(rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64))


@pytest.fixture
def ctx(tmp_path) -> Context:
    return Context(_split(64, 0), _split(32, 1), seed=0, cache_dir=tmp_path)


FITS = []


def _make(width: int = 4, **_):
    return nn.Linear(784, width)


def _fit(module, ctx, width: int = 4, epochs: int = 1):
    FITS.append((width, epochs))
    with torch.no_grad():
        module.weight.add_(torch.randn(module.weight.shape))
    return {"best_epoch": epochs, "val_loss": [0.0] * epochs, "best_val_loss": 0.0}


TINY = Recipe("tiny", _make, _fit, "a linear layer", {"width": 4, "epochs": 1}, {"temperature": 1.0})


def test_a_recipes_weights_do_not_depend_on_what_ran_before(tmp_path):
    """The cache key holds the seed, not the global RNG state: two trainings after different draws agree."""
    trained = []
    for i, state in enumerate((1, 2)):
        torch.manual_seed(state)
        torch.rand(100)
        c = Context(_split(64, 0), _split(32, 1), seed=0, cache_dir=tmp_path / str(i))
        trained.append(get_or_fit(TINY, {}, c)[0].state_dict())
    assert all(torch.equal(trained[0][k], trained[1][k]) for k in trained[0])


def test_recipe_trained_once_then_loaded_and_evaluation_params_do_not_retrain(ctx):
    FITS.clear()
    first, _, cached = get_or_fit(TINY, {}, ctx)
    assert not cached and FITS == [(4, 1)]
    again, _, cached = get_or_fit(TINY, {"temperature": 2.0}, ctx)  # evaluation parameter: set, not trained
    assert cached and FITS == [(4, 1)] and again.temperature == 2.0
    assert torch.equal(first.weight, again.weight)
    other, _, cached = get_or_fit(TINY, {"epochs": 2}, ctx)  # a training parameter: another network
    assert not cached and FITS == [(4, 1), (4, 2)]
    assert len(list((ctx.cache_dir / "models").glob("tiny-*.pt"))) == 2
    with pytest.raises(Exception, match="tiny has no parameter 'depth'"):
        get_or_fit(TINY, {"depth": 3}, ctx)


def test_recipe_key_changes_with_the_data(ctx, tmp_path):
    get_or_fit(TINY, {}, ctx)
    other = Context(_split(64, 5), ctx.val, seed=0, cache_dir=tmp_path)
    assert not get_or_fit(TINY, {}, other)[2]


def test_training_split_is_a_seeded_subset(ctx):
    a, b = ctx.training_split(10), ctx.training_split(10)
    assert len(a) == 10 and np.array_equal(a.x, b.x)
    assert ctx.training_split(None) is ctx.train and ctx.training_split(1000) is ctx.train


def test_local_reparameterization_matches_explicit_weight_draws():
    torch.manual_seed(0)
    layer = StochasticLinear(6, 3, sigma_init=0.3)
    x = torch.rand(2, 6)
    n = 20000
    with torch.no_grad():
        fast = torch.stack([layer(x) for _ in range(n)])  # (n, 2, 3)
        sw, sb = layer.sigmas()
        w = layer.weight_mu + sw * torch.randn(n, *sw.shape)
        b = layer.bias_mu + sb * torch.randn(n, *sb.shape)
        slow = torch.einsum("bi,noi->nbo", x, w) + b[:, None, :]
    torch.testing.assert_close(fast.mean(0), slow.mean(0), atol=0.02, rtol=0)
    torch.testing.assert_close(fast.var(0), slow.var(0), atol=0.01, rtol=0.05)
    analytic = x ** 2 @ (sw ** 2).T + sb ** 2
    torch.testing.assert_close(fast.var(0), analytic, atol=0.01, rtol=0.05)


def test_kl_matches_torch_distributions():
    layer = StochasticLinear(5, 4, sigma_init=0.05)
    with torch.no_grad():
        layer.weight_mu.normal_()
    prior = 0.1
    sw, sb = layer.sigmas()
    ref = sum(torch.distributions.kl_divergence(torch.distributions.Normal(mu, s), torch.distributions.Normal(0.0, prior)).sum()
              for mu, s in ((layer.weight_mu, sw), (layer.bias_mu, sb)))
    torch.testing.assert_close(layer.kl(prior), ref)


def test_stochastic_predictions_are_random_and_seeded():
    torch.manual_seed(0)
    model = StochasticMLP().eval()
    with torch.no_grad():
        for layer in [*model.layers, model.head]:
            layer.weight_rho.fill_(0.0)  # sigma = softplus(0) = 0.69: clearly random
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        torch.manual_seed(1)
        a = model(x)
        b = model(x)
        torch.manual_seed(1)
        c = model(x)
    assert not torch.equal(a, b) and torch.equal(a, c)


def test_eot_gradient_is_the_mean_of_single_draw_gradients():
    torch.manual_seed(0)
    model = StochasticMLP(eot_samples=4).eval()
    with torch.no_grad():
        for layer in [*model.layers, model.head]:
            layer.weight_rho.fill_(-2.0)
    clf = make_classifier(model)
    assert isinstance(clf, EoTClassifier) and clf.eot_samples == 4
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[[1, 2, 3]]
    torch.manual_seed(7)
    eot = clf.loss_gradient(x, y)
    single = CheckedClassifier(model=model, loss=nn.CrossEntropyLoss(reduction="sum"), input_shape=(1, 28, 28), nb_classes=10,
                               clip_values=(0.0, 1.0))
    torch.manual_seed(7)
    draws = [single.loss_gradient(x, y) for _ in range(4)]
    np.testing.assert_allclose(eot, np.mean(draws, 0), rtol=1e-5, atol=1e-8)
    assert not np.allclose(draws[0], draws[1])  # the draws differ: EoT averages something
    assert type(make_classifier(MLP())) is CheckedClassifier


def _dae() -> DAE:
    torch.manual_seed(0)
    return DAE().eval()


def test_apudae_leaves_typical_inputs_alone_and_purifies_the_rest():
    dae = _dae()
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        r = reconstruction_error(dae, x)
    tau = float(r.sort().values[2])  # samples at or below the 3rd smallest error are "typical"
    purifier = APuDAE(dae, tau, steps=5, step_size=0.05, radius=0.2)
    out, _ = purifier.forward(x)
    typical = r <= tau
    assert typical.sum() == 3
    assert torch.equal(out[typical], x[typical])
    moved = out[~typical]
    assert (moved - x[~typical]).abs().amax() <= 0.2 + 1e-6 and moved.min() >= 0 and moved.max() <= 1
    assert (reconstruction_error(dae, moved) < r[~typical]).all()  # purification lowers the reconstruction error


def test_apudae_passes_gradients_straight_through_and_direct_mode_is_the_dae():
    dae, mlp = _dae(), MLP().eval()
    x = np.random.default_rng(1).random((4, 1, 28, 28), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[[0, 1, 2, 3]]
    purifier = APuDAE(dae, tau=0.0, steps=3, step_size=0.05)
    purified = purifier.forward(torch.from_numpy(x))[0].detach().numpy()
    grad = make_classifier(mlp, purifier).loss_gradient(x, y)
    at_purified = make_classifier(mlp).loss_gradient(purified, y)
    np.testing.assert_allclose(grad, at_purified, rtol=1e-5, atol=1e-7)
    direct = APuDAE(dae, tau=0.0, mode="direct")
    torch.testing.assert_close(direct.forward(torch.from_numpy(x))[0], dae(torch.from_numpy(x)))
    with pytest.raises(ValueError, match="mode must be"):
        APuDAE(dae, 0.0, mode="sometimes")


def test_feature_dae_differentiates_through_the_denoiser():
    dae, mlp = _dae(), MLP().eval()
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    out, _ = FeatureDAE(dae).forward(x)
    torch.testing.assert_close(out, dae(x))
    grad, = torch.autograd.grad(nn.functional.cross_entropy(mlp(out), torch.tensor([1, 2])), x)
    assert grad.abs().sum() > 0
    with pytest.raises(ValueError, match="pixel values"):
        FeatureDAE(dae).forward(torch.full((1, 1, 28, 28), 2.0))


def test_pgd_of_adversarial_training_stays_in_the_ball_and_raises_the_loss():
    torch.manual_seed(0)
    model = MLP().eval()
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    xa = pgd(model, x, y, 0.1, 10, 0.025, torch.Generator().manual_seed(0))
    assert (xa - x).abs().amax() <= 0.1 + 1e-6 and xa.min() >= 0 and xa.max() <= 1
    with torch.no_grad():
        assert nn.functional.cross_entropy(model(xa), y) > nn.functional.cross_entropy(model(x), y)
    assert torch.equal(pgd(model, x, y, 0.0, 10, 0.025, torch.Generator()), x)


def test_registries_and_training_overrides():
    assert {"mlp", "pgd_at", "stochastic"} <= set(MODELS) and {"apudae", "feature_dae"} <= set(DEFENCES)
    assert MODELS["stochastic"].split({"eot_samples": 2}) == ({"max_epochs": 10, "patience": 3, "n_train": None,
                                                              "prior_std": 0.1}, {"eot_samples": 2, "inference_samples": 1})
    assert TINY.training_overrides({"max_epochs": 3, "n_train": 5}) == {}  # TINY has neither key
    with pytest.raises(ValueError, match="train.lr is not a training budget key"):
        TINY.training_overrides({"lr": 0.1})


def test_load_model_and_load_defence_for_your_own_art_code(data_root, tmp_path):
    from attractor_bench import load_defence, load_model
    from attractor_bench.errors import ConfigError

    common = dict(data_root=data_root, cache_dir=tmp_path, download=False)
    mlp = load_model("mlp", **common, n_train=300, max_epochs=1)
    assert isinstance(mlp, MLP) and not mlp.training
    again = load_model("mlp", **common, n_train=300, max_epochs=1)  # from the cache: the same weights
    assert all(torch.equal(a, b) for a, b in zip(mlp.state_dict().values(), again.state_dict().values()))
    purifier = load_defence("apudae", mlp, **common, steps=2, train={"n_train": 300, "max_epochs": 1})
    assert isinstance(purifier, APuDAE) and purifier.steps == 2 and 0 < purifier.tau < 1
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    assert make_classifier(mlp, purifier).predict(x).shape == (2, 10)
    with pytest.raises(ConfigError, match="Unknown defence 'nope'"):
        load_defence("nope", mlp, **common)
    with pytest.raises(ConfigError, match="Unknown model 'nope'.*pgd_at"):
        load_model("nope", **common)


def test_load_model_reads_training_overrides_as_a_suite_does(data_root, tmp_path, monkeypatch):
    """`load_model("attractor", early_stopping="best")` trains the model a suite's
    `{preset: attractor, train: {early_stopping: best}}` names (the same key); unknown options are refused."""
    import yaml

    from attractor_bench import api
    from attractor_bench.config import parse_suite
    from attractor_bench.errors import ConfigError

    asked = []
    monkeypatch.setattr(api, "get_or_train", lambda cfg, *a, **k: asked.append(cfg) or (torch.nn.Identity(),))
    common = dict(data_root=data_root, cache_dir=tmp_path, download=False)
    api.load_model("attractor", **common, early_stopping="best", weights=[0.988, 0.002, 0.01])
    api.load_model("attractor", **common, early_stopping="paper")  # without overrides: the leaderboard's (tests/test_zoo.py)
    doc = {"models": {"a": {"preset": "attractor", "train": {"early_stopping": "best"}}}, "attacks": [{"name": "fgsm", "eps": [0.1]}]}
    from_suite = parse_suite(yaml.safe_load(yaml.safe_dump(doc)), tmp_path / "s.yaml").models[0].train
    assert asked[0] == from_suite and asked[0].key() == from_suite.key()
    assert asked[1].early_stopping.value == "paper" and asked[1].key() != asked[0].key()
    with pytest.raises(ConfigError, match="Unknown training option.*stopping"):
        api.load_model("attractor", **common, stopping="best")
