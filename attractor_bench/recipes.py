"""Trained networks other than the attractor presets: the comparison models and the networks
inside trained defences (denoisers, feature extractors).

A `Recipe` says how to build a network (`make(**params)`, untrained) and how to train it
(`fit(module, ctx, **params)`, returning a JSON-able history); `attractor_bench.cache.Context`
trains it on first use and loads it from the model cache after. The cache key covers the recipe's
name, parameters, seed, the training data and the source of the modules its training depends on:
the modules defining `make` and `fit` and those named in `depends` (by name), nothing else, so
an edit elsewhere does not retrain it.

Parameters come in two kinds: `defaults` determine the trained weights (part of the key);
`eval_defaults` only set attributes of the trained module that change how it is evaluated
(such as the number of weight samples per gradient of a randomized model), so changing them
does not retrain.

>>> mlp = ctx.trained(MODELS["mlp"])                 # trained once, then cached
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from .files import key, source_fingerprint

TRAINING_KEYS = ("max_epochs", "patience", "n_train")  # the budget a trained defence's `train` mapping may change


@dataclass(frozen=True)
class Recipe:
    name: str
    make: Callable[..., nn.Module]  # make(**params) -> untrained module (gets every training parameter)
    fit: Callable[..., dict]  # fit(module, ctx, **params) -> history (JSON-able)
    description: str
    defaults: dict = field(default_factory=dict)  # parameters of make/fit (they determine the weights)
    eval_defaults: dict = field(default_factory=dict)  # attributes set on the trained module (evaluation only)
    depends: tuple[str, ...] = ()  # further modules (by name) whose source determines the trained weights

    def split(self, given: dict) -> tuple[dict, dict]:
        """(training parameters, evaluation parameters) with defaults filled in; ValueError for unknown keys."""
        unknown = sorted(set(given) - set(self.defaults) - set(self.eval_defaults))
        if unknown:
            raise ValueError(f"{self.name} has no parameter {unknown[0]!r}; it takes "
                             f"{', '.join(sorted({**self.defaults, **self.eval_defaults})) or 'none'}.")
        train = {k: given.get(k, v) for k, v in self.defaults.items()}
        return train, {k: given.get(k, v) for k, v in self.eval_defaults.items()}

    def training_overrides(self, train: dict | None) -> dict:
        """The `train` mapping of a trained defence's parameters, checked: only budget keys."""
        train = dict(train or {})
        unknown = sorted(set(train) - set(TRAINING_KEYS))
        if unknown:
            raise ValueError(f"train.{unknown[0]} is not a training budget key; use {', '.join(TRAINING_KEYS)}.")
        return {k: v for k, v in train.items() if k in self.defaults}

    def sources(self) -> list:
        """The modules whose source determines the trained weights."""
        modules = {inspect.getmodule(self.make), inspect.getmodule(self.fit)} | {importlib.import_module(m) for m in self.depends}
        return sorted(modules - {None}, key=lambda m: m.__name__)

    def key(self, params: dict, seed: int) -> str:
        """Everything besides the data that determines the trained weights, code included."""
        return key(recipe=self.name, params=params, seed=seed, code=source_fingerprint(*self.sources()))
