"""Trained networks other than the attractor presets: the comparison models and the networks
inside trained defences (denoisers, feature extractors).

A `Recipe` says how to build a network (`make(**params)`, untrained) and how to train it
(`fit(module, ctx, **params)`, returning a JSON-able history); `attractor_bench.cache.Context`
trains it on first use and loads it from the model cache after. The cache key covers the recipe's
name, parameters, seed, the training data and the version of its component (`recipe.<name>`,
`attractor_bench.components`, whose code is `make`, `fit`, what they call and the modules named in
`depends`; see `cache.recipe_key`), nothing else, so a bump elsewhere does not retrain it.

Parameters come in two kinds: `defaults` determine the trained weights (part of the key);
`eval_defaults` only set attributes of the trained module that change how it is evaluated
(such as the number of weight samples per gradient of a randomized model), so changing them
does not retrain.

>>> mlp = ctx.trained(MODELS["mlp"])                 # trained once, then cached
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from .files import key

TRAINING_KEYS = ("max_epochs", "patience", "n_train")  # the budget a trained defence's `train` mapping may change


@dataclass(frozen=True)
class Recipe:
    name: str
    make: Callable[..., nn.Module]  # make(**params) -> untrained module (gets every training parameter)
    fit: Callable[..., dict]  # fit(module, ctx, **params) -> history (JSON-able)
    description: str
    defaults: dict = field(default_factory=dict)  # parameters of make/fit (they determine the weights)
    eval_defaults: dict = field(default_factory=dict)  # attributes set on the trained module (evaluation only)
    depends: tuple[str, ...] = ()  # further modules (by name) whose code determines the trained weights
    version: int = 1  # bump when the weights its training gives change (attractor_bench.components)

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

    def key(self, params: dict, seed: int) -> str:
        """The recipe's name, parameters and seed (the model cache adds the data and the version of
        the recipe's code: `cache.get_or_fit`)."""
        return key(recipe=self.name, params=params, seed=seed)
