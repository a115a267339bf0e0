"""Trained models cached on disk, keyed by everything that determines them: the training
configuration, the versions of the components that train them (`attractor_bench.components`)
and the training/validation data.

Files: `<cache_dir>/models/<key>.pt`, written atomically and read with `weights_only=True`.
The same holds for the networks of `attractor_bench.recipes` (`get_or_fit`).
The cache directory is the explicit argument, else `$ATTRACTOR_BENCH_CACHE`, else
`~/.cache/attractor-bench`.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import checkpoints, zoo
from .data import Split
from .determinism import deterministic
from .errors import CheckpointError, ConfigError
from .components import recipe_component, registered, versions
from .files import atomic_write, digest, key, source_fingerprint
from .models import AttractorNet
from .training import ProgressFn, TrainConfig, select_training_data, train

ENV_VAR = "ATTRACTOR_BENCH_CACHE"


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir is None:
        cache_dir = os.environ.get(ENV_VAR) or Path.home() / ".cache" / "attractor-bench"
    return Path(cache_dir).expanduser()


def _data_digest(*splits: Split) -> str:
    return digest(*(a.tobytes() for s in splits for a in (s.x, s.y)))


@dataclass
class Context:
    """What training a recipe needs: the data splits, the suite's seed, the cache and progress.
    A defence factory that takes `context` gets one, to train the networks it needs once."""

    train: Split
    val: Split
    seed: int = 0
    cache_dir: str | Path | None = None
    progress: ProgressFn | None = None
    device: str = "cpu"  # where recipes train (`attractor_bench.device`)
    use_zoo: bool = True  # take a network from the zoo (`attractor_bench.zoo`) when it holds the key asked for
    _data_key: str | None = None

    def data_key(self) -> str:
        if self._data_key is None:
            self._data_key = _data_digest(self.train, self.val)[:20]
        return self._data_key

    def training_split(self, n_train: int | None) -> Split:
        """The training images a recipe uses: all, or a seeded subset of `n_train` (small test suites)."""
        if n_train is None or n_train >= len(self.train):
            return self.train
        return self.train.take(np.sort(np.random.default_rng([self.seed, 11]).choice(len(self.train), n_train, replace=False)))

    def trained(self, recipe, **params: Any) -> nn.Module:
        """The trained network of `recipe` with `params` (training ones; evaluation ones are set too)."""
        return get_or_fit(recipe, params, self)[0].to(self.device)


def training_key(cfg: TrainConfig) -> str:
    """An attractor network's configuration and the versions of the code that trains it
    (`train.attractor` and what it requires: the network, the loop); the data comes on top."""
    return key(config=cfg.key(), components=versions("train.attractor"))


def recipe_key(recipe, params: dict, seed: int) -> str:
    """A recipe's parameters and seed and the versions of its code (`recipe.<name>` and what it
    requires); a recipe outside the registries (a plugin's) by the source of its modules."""
    if registered(recipe):
        return key(recipe=recipe.key(params, seed), components=versions(recipe_component(recipe.name)))
    modules = {inspect.getmodule(recipe.make), inspect.getmodule(recipe.fit)} - {None}
    return key(recipe=recipe.key(params, seed), outside=source_fingerprint(*sorted(modules, key=lambda m: m.__name__)))


def model_key(cfg: TrainConfig, train_split: Split, val_split: Split) -> str:
    tr, va = select_training_data(train_split, val_split, cfg)
    return digest(training_key(cfg).encode(), _data_digest(tr, va).encode())[:20]


def _load(path: Path, what: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types for a bad file; all mean the same to the user
        raise _corrupt(path, what, e) from e


def _corrupt(path: Path, what: str, e: Exception) -> CheckpointError:
    cause = (str(e).strip().splitlines() or [""])[0][:200]
    return CheckpointError(f"Checkpoint {path} is corrupt or does not match {what}. Delete it to retrain. "
                           f"({type(e).__name__}: {cause})")


def load_checkpoint(path: Path) -> tuple[AttractorNet, dict]:
    blob = _load(path, "the architecture")
    try:
        cfg = TrainConfig.from_dict(blob["config"])
        model = AttractorNet(cfg.output_activation)
        model.load_state_dict(blob["state_dict"])
    except Exception as e:
        raise _corrupt(path, "the architecture", e) from e
    model.eval()
    return model, blob


def _save(path: Path, blob: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(blob, tmp))


def _cpu(model: torch.nn.Module) -> dict:
    """The state dict on the CPU: a checkpoint loads on any machine."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _kind(model: torch.nn.Module) -> str:
    return next(model.parameters(), torch.empty(0)).device.type


def model_path(cfg: TrainConfig, train_split: Split, val_split: Split, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the model cache keeps the attractor network of `cfg` (its stem is the zoo's `cache_key`)."""
    return resolve_cache_dir(cache_dir) / "models" / f"{model_key(cfg, train_split, val_split)}.pt"


def get_or_train(
    cfg: TrainConfig,
    train_split: Split,
    val_split: Split,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
    device: str | torch.device = "cpu",
    use_zoo: bool = True,
) -> tuple[AttractorNet, dict, bool]:
    """Return (model, checkpoint blob, loaded_from_cache); training runs on `device`. The cache
    key does not hold the device: a model trained on CUDA is reused on the CPU and the reverse
    (its weights fingerprint tells the cells apart; the checkpoint records the device kind).
    Before training, the zoo is consulted by the same key (`use_zoo`): a zoo hit is not trained."""
    path = model_path(cfg, train_split, val_split, cache_dir)
    if path.is_file():
        model, blob = load_checkpoint(path)
        return model, blob, True
    hit = zoo.lookup(path.stem) if use_zoo else None
    if hit is not None:
        return zoo.fill(AttractorNet(cfg.output_activation), *hit), zoo.blob(hit[0]), True
    init = (get_or_train(cfg.init, train_split, val_split, cache_dir, progress, device, use_zoo)[0]
            if cfg.init is not None else None)
    t0 = time.perf_counter()
    with checkpoints.checkpointed(_partial(path), say=_say(progress)):
        model, history = train(train_split, val_split, cfg, progress, init, device)
    seconds = round(time.perf_counter() - t0, 1)
    blob = {"state_dict": _cpu(model), "config": cfg.to_dict(), "history": history.stages, "train_seconds": seconds,
            "device": _kind(model)}
    _save(path, blob)
    checkpoints.discard(_partial(path))
    return model, blob, False


def _partial(path: Path) -> Path:
    """Where a training keeps its checkpoints until its model is in the cache (`attractor_bench.checkpoints`)."""
    return path.with_name(path.stem + ".partial")


def _say(progress: ProgressFn | None):
    """Checkpoint messages: to the progress display's log when there is one (it has `say`), else to stderr."""
    say = getattr(progress, "say", None)
    return say if callable(say) else (lambda line: print(line, file=sys.stderr))


def recipe_path(recipe, train_params: dict, ctx: Context) -> Path:
    """Where the model cache keeps `recipe`'s network trained with `train_params` (its stem is the zoo's `cache_key`)."""
    key = digest(f"{recipe_key(recipe, train_params, ctx.seed)}:{ctx.data_key()}".encode())[:20]
    return resolve_cache_dir(ctx.cache_dir) / "models" / f"{recipe.name}-{key}.pt"


def get_or_fit(recipe, params: dict, ctx: Context) -> tuple[torch.nn.Module, dict, bool]:
    """(trained network of `recipe`, checkpoint blob, loaded_from_cache); see `attractor_bench.recipes`.
    `params` may hold training and evaluation parameters (the latter are set as module attributes).
    Before training, the zoo is consulted by the same key (`ctx.use_zoo`): a zoo hit is not trained."""
    try:
        train_params, eval_params = recipe.split(params)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    path = recipe_path(recipe, train_params, ctx)
    torch.manual_seed(ctx.seed)  # the initial weights come from the seed, not from whatever ran before
    module = recipe.make(**train_params)
    hit = None if path.is_file() or not ctx.use_zoo else zoo.lookup(path.stem)
    if path.is_file():
        blob = _load(path, recipe.name)
        try:
            module.load_state_dict(blob["state_dict"])
        except Exception as e:
            raise _corrupt(path, recipe.name, e) from e
        cached = True
    elif hit is not None:
        module, blob, cached = zoo.fill(module, *hit), zoo.blob(hit[0]), True
    else:
        t0 = time.perf_counter()
        with deterministic(), checkpoints.checkpointed(_partial(path), say=_say(ctx.progress)):
            history = recipe.fit(module, ctx, **train_params)
        blob = {"state_dict": _cpu(module), "device": _kind(module), "recipe": recipe.name, "params": train_params,
                "seed": ctx.seed, "history": history, "train_seconds": round(time.perf_counter() - t0, 1)}
        _save(path, blob)
        checkpoints.discard(_partial(path))
        cached = False
    for k, v in eval_params.items():
        setattr(module, k, v)
    return module.eval(), blob, cached
