"""Trained models cached on disk, keyed by everything that determines them: the training
configuration, the model definition's version and the training/validation data.

Files: `<cache_dir>/models/<key>.pt`, written atomically and read with `weights_only=True`.
The same holds for the networks of `attractor_bench.recipes` (`get_or_fit`).
The cache directory is the explicit argument, else `$ATTRACTOR_BENCH_CACHE`, else
`~/.cache/attractor-bench`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import time
from pathlib import Path

import torch

from .data import Split, mnist_train_val
from .errors import CheckpointError, ConfigError
from .models import AttractorNet
from .training import PRESETS, History, ProgressFn, TrainConfig, select_training_data, train

ENV_VAR = "ATTRACTOR_BENCH_CACHE"


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir is None:
        cache_dir = os.environ.get(ENV_VAR) or Path.home() / ".cache" / "attractor-bench"
    return Path(cache_dir).expanduser()


def model_key(cfg: TrainConfig, train_split: Split, val_split: Split) -> str:
    tr, va = select_training_data(train_split, val_split, cfg)
    h = hashlib.sha256(cfg.key().encode())
    for arr in (tr.x, tr.y, va.x, va.y):
        h.update(arr.tobytes())
    return h.hexdigest()[:20]


def load_checkpoint(path: Path) -> tuple[AttractorNet, dict]:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        cfg = TrainConfig.from_dict(blob["config"])
        model = AttractorNet(cfg.output_activation)
        model.load_state_dict(blob["state_dict"])
    except Exception as e:  # torch.load raises many types for a bad file; all mean the same to the user
        cause = (str(e).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"Checkpoint {path} is corrupt or does not match the architecture. Delete it to retrain. "
            f"({type(e).__name__}: {cause})"
        ) from e
    model.eval()
    return model, blob


def _save(path: Path, blob: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(blob, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(path: Path, model: AttractorNet, cfg: TrainConfig, history: History, train_seconds: float) -> None:
    _save(path, {"state_dict": model.state_dict(), "config": cfg.to_dict(), "history": history.stages,
                 "train_seconds": train_seconds})


def get_or_train(
    cfg: TrainConfig,
    train_split: Split,
    val_split: Split,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
) -> tuple[AttractorNet, dict, bool]:
    """Return (model, checkpoint blob, loaded_from_cache)."""
    path = resolve_cache_dir(cache_dir) / "models" / f"{model_key(cfg, train_split, val_split)}.pt"
    if path.is_file():
        model, blob = load_checkpoint(path)
        return model, blob, True
    init = get_or_train(cfg.init, train_split, val_split, cache_dir, progress)[0] if cfg.init is not None else None
    t0 = time.perf_counter()
    model, history = train(train_split, val_split, cfg, progress, init)
    seconds = round(time.perf_counter() - t0, 1)
    save_checkpoint(path, model, cfg, history, seconds)
    return model, {"config": cfg.to_dict(), "history": history.stages, "train_seconds": seconds}, False


def get_or_fit(recipe, params: dict, ctx) -> tuple[torch.nn.Module, dict, bool]:
    """(trained network of `recipe`, checkpoint blob, loaded_from_cache); see `attractor_bench.recipes`.
    `params` may hold training and evaluation parameters (the latter are set as module attributes)."""
    from .determinism import deterministic

    try:
        train_params, eval_params = recipe.split(params)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    key = hashlib.sha256(f"{recipe.key(train_params, ctx.seed)}:{ctx.data_key()}".encode()).hexdigest()[:20]
    path = resolve_cache_dir(ctx.cache_dir) / "models" / f"{recipe.name}-{key}.pt"
    module = recipe.make(**train_params)
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            module.load_state_dict(blob["state_dict"])
        except Exception as e:  # see load_checkpoint
            cause = (str(e).strip().splitlines() or [""])[0][:200]
            raise CheckpointError(f"Checkpoint {path} is corrupt or does not match {recipe.name}. Delete it to retrain. "
                                  f"({type(e).__name__}: {cause})") from e
        cached = True
    else:
        t0 = time.perf_counter()
        with deterministic():
            torch.manual_seed(ctx.seed)
            history = recipe.fit(module, ctx, **train_params)
        blob = {"state_dict": module.state_dict(), "recipe": recipe.name, "params": train_params, "seed": ctx.seed,
                "history": history, "train_seconds": round(time.perf_counter() - t0, 1)}
        _save(path, blob)
        cached = False
    for k, v in eval_params.items():
        setattr(module, k, v)
    return module.eval(), blob, cached


def load_model(
    preset: str = "attractor",
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    **overrides,
) -> AttractorNet:
    """The trained model of a preset (`baseline`, `attractor`), optionally with TrainConfig fields
    overridden; trained on first use, then loaded from the cache.

    >>> model = load_model("attractor")     # the paper's 1,000-sample attractor network
    """
    if preset not in PRESETS:
        raise ConfigError(f"Unknown model preset {preset!r}; known: {', '.join(PRESETS)}.")
    cfg = dataclasses.replace(PRESETS[preset], **overrides)
    train_split, val_split = mnist_train_val(data_root, download)
    return get_or_train(cfg, train_split, val_split, cache_dir)[0]
