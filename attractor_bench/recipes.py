"""Trained networks other than the attractor presets: the comparison models and the networks
inside trained defences (denoisers, feature extractors).

A `Recipe` says how to build a network (`make(**params)`, untrained) and how to train it
(`fit(module, ctx, **params)`, returning a JSON-able history). `Context.trained(recipe, **params)`
returns the trained network, training it on first use and loading it from the model cache after
(`attractor_bench.cache.get_or_fit`); the cache key covers the recipe's name, parameters, seed,
source code and the training data, so a changed recipe retrains.

Parameters come in two kinds: `defaults` determine the trained weights (part of the key);
`eval_defaults` only set attributes of the trained module that change how it is evaluated
(such as the number of weight samples per gradient of a randomized model), so changing them
does not retrain.

>>> mlp = ctx.trained(MODELS["mlp"])                 # trained once, then cached
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from .data import Split
from .training import ProgressFn


@dataclass(frozen=True)
class Recipe:
    name: str
    make: Callable[..., nn.Module]  # make(**params) -> untrained module (gets every training parameter)
    fit: Callable[..., dict]  # fit(module, ctx, **params) -> history (JSON-able)
    description: str
    defaults: dict = field(default_factory=dict)  # parameters of make/fit (they determine the weights)
    eval_defaults: dict = field(default_factory=dict)  # attributes set on the trained module (evaluation only)

    def split(self, given: dict) -> tuple[dict, dict]:
        """(training parameters, evaluation parameters) with defaults filled in; ValueError for unknown keys."""
        unknown = sorted(set(given) - set(self.defaults) - set(self.eval_defaults))
        if unknown:
            raise ValueError(f"{self.name} has no parameter {unknown[0]!r}; it takes "
                             f"{', '.join(sorted({**self.defaults, **self.eval_defaults})) or 'none'}.")
        train = {k: given.get(k, v) for k, v in self.defaults.items()}
        return train, {k: given.get(k, v) for k, v in self.eval_defaults.items()}

    def sources(self) -> list:
        """The modules whose source determines the trained weights: every module of the package (or
        the lone module) defining `make` and `fit`, since training loops are shared between modules."""
        import inspect
        import sys

        modules = set()
        for obj in (self.make, self.fit):
            module = inspect.getmodule(obj)
            package = (module.__package__ or "") if module else ""
            modules |= {m for name, m in list(sys.modules.items()) if (name == package or name.startswith(package + "."))
                        and getattr(m, "__file__", None)} if package else {module}
        return sorted(modules - {None}, key=lambda m: m.__name__)

    def key(self, params: dict, seed: int) -> str:
        """Everything besides the data that determines the trained weights, code included."""
        from .store import source_fingerprint

        blob = json.dumps({"recipe": self.name, "params": params, "seed": seed, "code": source_fingerprint(*self.sources())},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Context:
    """What training a recipe needs: the data splits, the suite's seed, the cache and progress."""

    train: Split
    val: Split
    seed: int = 0
    cache_dir: str | Path | None = None
    progress: ProgressFn | None = None
    device: str = "cpu"  # where recipes train (`attractor_bench.device`)
    _data_key: str | None = None

    def data_key(self) -> str:
        if self._data_key is None:
            h = hashlib.sha256()
            for arr in (self.train.x, self.train.y, self.val.x, self.val.y):
                h.update(arr.tobytes())
            self._data_key = h.hexdigest()[:20]
        return self._data_key

    def training_split(self, n_train: int | None) -> Split:
        """The training images a recipe uses: all, or a seeded subset of `n_train` (small test suites)."""
        if n_train is None or n_train >= len(self.train):
            return self.train
        return self.train.take(np.sort(np.random.default_rng([self.seed, 11]).choice(len(self.train), n_train, replace=False)))

    def trained(self, recipe: Recipe, **params: Any) -> nn.Module:
        """The trained network of `recipe` with `params` (training ones; evaluation ones are set too)."""
        from .cache import get_or_fit

        return get_or_fit(recipe, params, self)[0].to(self.device)
