"""The public API, above everything else: trained models, their defences and ART classifiers.

>>> from attractor_bench import load_model, load_defence, make_classifier
>>> model = load_model("attractor")                    # the leaderboard's model: from the zoo, else trained once
>>> classifier = make_classifier(model, load_defence("attractor", model))
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import torch

from . import zoo
from .cache import Context, get_or_fit, get_or_train
from .classifier import make_classifier
from .config import DefenceSpec
from .data import mnist_train_val
from .defenses import DEFENCES
from .device import resolve_device
from .errors import ConfigError
from .models import MODELS
from .runner import run_suite
from .presets import PRESETS
from .protocol import leaderboard_models
from .training import TrainConfig, with_seed


def _context(data_root, cache_dir, download: bool, seed: int, use_zoo: bool = True) -> Context:
    train_split, val_split = mnist_train_val(data_root, download)
    return Context(train_split, val_split, seed, cache_dir, use_zoo=use_zoo)


def _ranked(name: str, data_root, cache_dir, download: bool, train: bool) -> torch.nn.Module:
    """A leaderboard model: the zoo's weights (hash-checked), else its suite's spec trained (or cached)."""
    suite, spec = leaderboard_models()[name]
    if not train and name in zoo.read_manifest()["models"]:
        return zoo.load(name)
    if not train:
        warnings.warn(f"{name} is not in the zoo ({zoo.zoo_dir()}): it is loaded from the model cache, or trained there "
                      f"as {suite.path.name} trains it (minutes to hours on a CPU).", stacklevel=3)
    ctx = _context(data_root, cache_dir, download, suite.seed, use_zoo=not train)
    if spec.train is not None:
        return get_or_train(spec.train, ctx.train, ctx.val, cache_dir, use_zoo=not train)[0]
    return get_or_fit(spec.builder, spec.params, ctx)[0]


def load_model(
    name: str = "attractor",
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    seed: int = 0,
    train: bool = False,
    device: str | torch.device | None = "cpu",
    **overrides,
) -> torch.nn.Module:
    """A trained model, in evaluation mode, on `device`.

    A leaderboard name (every model of suites/leaderboard.yaml, leaderboard_attractor_at.yaml and
    leaderboard_sota.yaml, such as `attractor` or `attractor_at_01_long`) without overrides is the ranked
    model: the zoo's weights (`attractor_bench.zoo`, checked against their SHA-256; seconds), else the
    suite's spec trained on first use and cached (a warning says so); `train=True` skips the zoo. With
    overrides, a preset name is the preset with them: an attractor network (`baseline`, `attractor`,
    `attractor_full`; `overrides` are TrainConfig fields, read as a suite's `train:` keys) or a comparison
    model (`mlp`, `pgd_at`, `stochastic`, `cnn_at`, `attractor_at`; `overrides` are its parameters), from
    the same cache as `attractor-bench run` (and from the zoo where it holds that very key).

    >>> model = load_model("attractor")     # the leaderboard's `attractor` (trained with early_stopping: best)
    >>> model = load_model("attractor", early_stopping="paper")   # the paper's stopping rule
    >>> robust = load_model("attractor_at_01_long", device="cuda")
    """
    if not overrides and name in leaderboard_models() and seed == leaderboard_models()[name][0].seed:
        return _ranked(name, data_root, cache_dir, download, train).eval().to(resolve_device(device))
    if name in MODELS:
        model = get_or_fit(MODELS[name], overrides, _context(data_root, cache_dir, download, seed, not train))[0]
        return model.to(resolve_device(device))
    if name not in PRESETS:
        known = sorted({*PRESETS, *MODELS, *leaderboard_models()})
        raise ConfigError(f"Unknown model {name!r}; known: {', '.join(known)} (presets, comparison models and the "
                          "leaderboard's names).")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"Unknown training option(s) for preset {name!r}: {', '.join(unknown)}; "
                          f"known: {', '.join(f.name for f in dataclasses.fields(TrainConfig))}.")
    # through the dict form, so that `early_stopping="best"` or `weights=[...]` read as in a suite file
    cfg = TrainConfig.from_dict({**with_seed(PRESETS[name], seed).to_dict(), **overrides})
    train_split, val_split = mnist_train_val(data_root, download)
    return get_or_train(cfg, train_split, val_split, cache_dir, use_zoo=not train)[0].to(resolve_device(device))


def load_defence(
    name: str,
    model: torch.nn.Module,
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    seed: int = 0,
    **params,
):
    """The ART preprocessor of defence `name` for `model`, with the networks it needs trained once and
    cached (`apudae`, `feature_dae`), or built directly (`attractor`, `none`).

    >>> purifier = load_defence("apudae", load_model("mlp"))
    >>> classifier = make_classifier(load_model("mlp"), purifier)
    """
    if name not in DEFENCES:
        raise ConfigError(f"Unknown defence {name!r}; known: {', '.join(DEFENCES)}.")
    return DefenceSpec(name, params).build(model, _context(data_root, cache_dir, download, seed))


__all__ = ["load_model", "load_defence", "make_classifier", "run_suite"]
