"""The public API, above everything else: trained models, their defences and ART classifiers.

>>> from attractor_bench import load_model, load_defence, make_classifier
>>> model = load_model("attractor")                    # trained on first use, then cached
>>> classifier = make_classifier(model, load_defence("attractor", model))
"""

from __future__ import annotations

import dataclasses
import os

import torch

from .cache import Context, get_or_fit, get_or_train
from .classifier import make_classifier
from .config import DefenceSpec
from .data import mnist_train_val
from .defences import DEFENCES
from .errors import ConfigError
from .models import MODELS
from .runner import run_suite
from .presets import PRESETS
from .training import TrainConfig, with_seed


def _context(data_root, cache_dir, download: bool, seed: int) -> Context:
    train_split, val_split = mnist_train_val(data_root, download)
    return Context(train_split, val_split, seed, cache_dir)


def load_model(
    preset: str = "attractor",
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    seed: int = 0,
    **overrides,
) -> torch.nn.Module:
    """The trained model of a preset, trained on first use, then loaded from the cache: an attractor
    network (`baseline`, `attractor`, `attractor_full`; `overrides` are TrainConfig fields) or a
    comparison model (`mlp`, `pgd_at`, `stochastic`; `overrides` are its parameters). The same
    cache as `attractor-bench run`, so a suite's models are reused.

    >>> model = load_model("attractor")     # the paper's 1,000-sample attractor network, the paper's stopping rule
    >>> model = load_model("attractor", early_stopping="best")   # as the committed leaderboard's `attractor`
    >>> robust = load_model("pgd_at")       # the PGD-trained MLP
    """
    if preset in MODELS:
        return get_or_fit(MODELS[preset], overrides, _context(data_root, cache_dir, download, seed))[0]
    if preset not in PRESETS:
        raise ConfigError(f"Unknown model preset {preset!r}; known: {', '.join([*PRESETS, *MODELS])}.")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"Unknown training option(s) for preset {preset!r}: {', '.join(unknown)}; "
                          f"known: {', '.join(f.name for f in dataclasses.fields(TrainConfig))}.")
    # through the dict form, so that `early_stopping="best"` or `weights=[...]` read as in a suite file
    cfg = TrainConfig.from_dict({**with_seed(PRESETS[preset], seed).to_dict(), **overrides})
    train_split, val_split = mnist_train_val(data_root, download)
    return get_or_train(cfg, train_split, val_split, cache_dir)[0]


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
