"""Contract tests parametrized over every registry, so that a new entry is tested without anyone
listing it: every attack (`ATTACKS`), every defence (`DEFENCES`), every trained-network recipe
(`MODELS`, `MODELS_INTERNAL`) and every attractor preset (`PRESETS`), each case on a random-init
network, random images and tiny synthetic splits, with the smallest budgets the entry accepts.

What an entry does (finding adversarial examples, purifying, learning) is tested elsewhere
(test_attacks.py, test_comparison.py, test_defence.py); here only what every entry promises."""

import dataclasses
import importlib
import inspect
import json

import numpy as np
import pytest
import torch
from art.defences.preprocessor.preprocessor import Preprocessor, PreprocessorPyTorch
from torch import nn

from attractor_bench.attacks import ATTACKS, NORMS, perturbation_norms
from attractor_bench.cache import Context, get_or_fit
from attractor_bench.classifier import make_classifier
from attractor_bench.config import DefenceSpec
from attractor_bench.data import Split
from attractor_bench.defenses import DEFENCES, MODELS_INTERNAL, AttractorDefence, PearsonRejector
from attractor_bench.models import MODELS, N_CLASSES, AttractorNet
from attractor_bench.recipes import TRAINING_KEYS
from attractor_bench.presets import PRESETS
from attractor_bench.training import TrainConfig

N = 6  # images per attack / defence case
EPS = {"linf": 0.1, "l2": 1.0}

# The smallest budgets, by parameter name; an entry gets those its `params` allow (so a new attack
# taking `max_iter` runs one iteration without being listed). Measured on 2 cores: every attack
# case below takes well under 10 s with these on 6 images.
MINIMAL = {
    "max_iter": 1, "binary_search_steps": 1, "max_halving": 1, "max_doubling": 1,  # iterative, C&W L2
    "largest_const": 0.02,  # C&W L-inf: one constant (initial_const 0.01 doubles past it) per sample
    "nb_grads": 2,  # DeepFool: the gradients of the 2 most likely classes only
    "max_eval": 5, "init_eval": 2, "init_size": 2,  # HopSkipJump, Boundary (init_size: random starts tried)
    "num_trial": 1, "sample_size": 1,  # Boundary
    "apgd_max_iter": 1, "deepfool_max_iter": 1, "square_max_iter": 1,  # AutoAttack members
}


def _budget(entry) -> dict:
    allowed = entry.allowed_params()
    allowed = set(entry.defaults) if allowed is None else allowed  # a factory taking **kw: only what it defaults
    return {k: v for k, v in MINIMAL.items() if k in allowed}


def _labels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, N_CLASSES, n).astype(np.int64)


def _split(n: int, seed: int) -> Split:
    """Tiny learnable data: noise plus one bright pixel per class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n)
    x = rng.random((n, 1, 28, 28), dtype=np.float32) * 0.2
    x[np.arange(n), 0, y, y] = 1.0
    return Split(x, y.astype(np.int64))


@pytest.fixture
def ctx(tmp_path) -> Context:
    return Context(_split(64, 0), _split(32, 1), seed=0, cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------------------------------- attacks

# Standard AutoAttack has no budget to shorten (the authors' budgets are the point): on a random-init model
# every image survives to Square's 5,000 queries, so its contract runs with the slow tests.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "autoattack_standard" else n
                                  for n in sorted(ATTACKS)])
def test_attack_contract(name, model, images):
    entry = ATTACKS[name]
    assert entry.norm in NORMS and entry.kind in ("gradient", "score", "decision")
    assert isinstance(entry.description, str) and entry.description.strip()
    for module in entry.depends:
        importlib.import_module(module)
    allowed = entry.allowed_params()
    if allowed is not None:
        assert set(entry.defaults) <= allowed | {"verbose"}, "defaults a suite could not override"

    x, y = images[:N], _labels(N)
    defence = AttractorDefence(model)
    clf = make_classifier(model, defence)
    rejector = PearsonRejector(defence, similarity=0.5) if entry.needs_rejector else None
    eps = EPS[entry.norm]
    np.random.seed(0)
    torch.manual_seed(0)
    budget = _budget(entry)
    attack = entry.build(clf, eps, rejector=rejector, **budget)
    for k, v in budget.items():  # the small budget reached the attack (where it keeps the parameter)
        assert getattr(attack, k, v) == v, k
    x_adv = attack.generate(x.copy(), y)

    assert isinstance(x_adv, np.ndarray) and x_adv.dtype == np.float32, getattr(x_adv, "dtype", type(x_adv))
    assert x_adv.shape == x.shape
    assert np.isfinite(x_adv).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    if entry.bounded:
        assert perturbation_norms(x_adv, x, entry.norm).max() <= eps * (1 + 1e-5) + 1e-6


def test_needs_rejector_attacks_refuse_to_build_without_one(model):
    clf = make_classifier(model, AttractorDefence(model))
    for name, entry in ATTACKS.items():
        if entry.needs_rejector:
            with pytest.raises(ValueError, match="rejector"):
                entry.build(clf, 0.1)


# --------------------------------------------------------------------------------------- defences

TINY_TRAIN = {"max_epochs": 1, "patience": 1, "n_train": 32}


def _defence_params(factory) -> dict:
    """A factory with a `train` budget gets the tiniest one."""
    return {"train": dict(TINY_TRAIN)} if "train" in inspect.signature(factory).parameters else {}


@pytest.mark.parametrize("name", sorted(DEFENCES))
def test_defence_contract(name, model, images, ctx):
    factory = DEFENCES[name]
    assert callable(factory) and (factory.__doc__ or "").strip(), "a defence needs a description (its docstring)"
    torch.manual_seed(0)
    defence = DefenceSpec(name, _defence_params(factory)).build(model, ctx)  # as the runner builds it
    assert defence is None or isinstance(defence, Preprocessor), type(defence)

    x = images[:N]
    clf = make_classifier(model, defence)
    probs = clf.predict(x)
    assert probs.shape == (N, N_CLASSES) and np.isfinite(probs).all()
    if isinstance(defence, PreprocessorPyTorch):
        out, _ = defence.forward(torch.from_numpy(x))
        assert out.shape == x.shape and torch.isfinite(out).all()
        grad = clf.loss_gradient(x, np.eye(N_CLASSES, dtype=np.float32)[_labels(N)])  # ART: one-hot
        assert grad.shape == x.shape and np.isfinite(grad).all()


# ---------------------------------------------------------------------------------------- recipes

RECIPES = {**MODELS, **MODELS_INTERNAL}


def test_recipe_names_are_unique_and_match_their_keys():
    assert not set(MODELS) & set(MODELS_INTERNAL)
    assert all(r.name == n for n, r in RECIPES.items())


def _other_value(v):
    if v is None:
        return 7
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v + 1
    return f"{v}-other"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_contract(name, ctx):
    recipe = RECIPES[name]
    assert recipe.description.strip()
    assert isinstance(recipe.make(**recipe.defaults), nn.Module)
    assert recipe.split({}) == (recipe.defaults, recipe.eval_defaults)
    with pytest.raises(ValueError, match="has no parameter"):
        recipe.split({"no_such_parameter": 1})

    train, _ = recipe.split({})
    k = recipe.key(train, 0)
    assert k == recipe.key(dict(train), 0) and k != recipe.key(train, 1)
    for p, v in train.items():
        assert recipe.key({**train, p: _other_value(v)}, 0) != k, f"the key ignores {p}"

    from attractor_bench.components import recipe_component, versions
    assert recipe_component(recipe.name) in versions(recipe_component(recipe.name))

    budget = {k: v for k, v in {**TINY_TRAIN, "steps": 1}.items() if k in recipe.defaults}
    assert set(TRAINING_KEYS) & set(recipe.defaults), "a recipe without a training budget cannot be trained small"
    module, blob, cached = get_or_fit(recipe, budget, ctx)
    assert not cached and isinstance(module, nn.Module) and not module.training
    for attr, v in recipe.eval_defaults.items():
        assert getattr(module, attr) == v
    x = torch.from_numpy(np.random.default_rng(2).random((4, 1, 28, 28), dtype=np.float32))
    with torch.no_grad():
        out = module(x)
    assert torch.isfinite(out).all()
    if name in MODELS or out.shape != x.shape:  # a model under test gives logits; a denoiser, images
        assert out.shape == (4, N_CLASSES), f"{name}: {tuple(out.shape)}"
    else:
        assert out.min() >= 0 and out.max() <= 1
    json.dumps(blob["history"])  # JSON-able, as the recipe contract says

    again, _, cached = get_or_fit(recipe, budget, ctx)
    assert cached
    assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), again.state_dict().values()))


def test_denoiser_recipes_map_images_to_images():
    """The two known denoisers (so the image-to-image branch above is exercised)."""
    x = torch.rand(2, 1, 28, 28)
    for name in ("apudae_dae", "feature_dae_net"):
        recipe = MODELS_INTERNAL[name]
        with torch.no_grad():
            assert recipe.make(**recipe.defaults).eval()(x).shape == x.shape


# ---------------------------------------------------------------------------------------- presets

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_contract(name):
    cfg = PRESETS[name]
    assert isinstance(cfg, TrainConfig)
    d = cfg.to_dict()
    again = TrainConfig.from_dict(json.loads(json.dumps(d)))  # as stored in a checkpoint
    assert again == cfg and again.to_dict() == d
    assert cfg.key() == again.key() == TrainConfig.from_dict(cfg.to_dict()).key()
    assert dataclasses.replace(cfg, seed=cfg.seed + 1).key() != cfg.key()
    assert isinstance(AttractorNet(cfg.output_activation), nn.Module)
