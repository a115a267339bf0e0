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
    _save(path, {"state_dict": _cpu(model), "config": cfg.to_dict(), "history": history.stages,
                 "train_seconds": train_seconds, "device": _kind(model)})


def _cpu(model: torch.nn.Module) -> dict:
    """The state dict on the CPU: a checkpoint loads on any machine."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _kind(model: torch.nn.Module) -> str:
    return next(model.parameters(), torch.empty(0)).device.type


def get_or_train(
    cfg: TrainConfig,
    train_split: Split,
    val_split: Split,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
    device: str | torch.device = "cpu",
) -> tuple[AttractorNet, dict, bool]:
    """Return (model, checkpoint blob, loaded_from_cache); training runs on `device`. The cache
    key does not hold the device: a model trained on CUDA is reused on the CPU and the reverse
    (its weights fingerprint tells the cells apart; the checkpoint records the device kind)."""
    path = resolve_cache_dir(cache_dir) / "models" / f"{model_key(cfg, train_split, val_split)}.pt"
    if path.is_file():
        model, blob = load_checkpoint(path)
        return model, blob, True
    init = get_or_train(cfg.init, train_split, val_split, cache_dir, progress, device)[0] if cfg.init is not None else None
    t0 = time.perf_counter()
    model, history = train(train_split, val_split, cfg, progress, init, device)
    seconds = round(time.perf_counter() - t0, 1)
    save_checkpoint(path, model, cfg, history, seconds)
    return model, {"config": cfg.to_dict(), "history": history.stages, "train_seconds": seconds, "device": _kind(model)}, False


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
        blob = {"state_dict": _cpu(module), "device": _kind(module), "recipe": recipe.name, "params": train_params, "seed": ctx.seed,
                "history": history, "train_seconds": round(time.perf_counter() - t0, 1)}
        _save(path, blob)
        cached = False
    for k, v in eval_params.items():
        setattr(module, k, v)
    return module.eval(), blob, cached


def _context(data_root, cache_dir, download: bool, seed: int):
    from .recipes import Context

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

    >>> model = load_model("attractor")     # the paper's 1,000-sample attractor network
    >>> robust = load_model("pgd_at")       # the PGD-trained MLP
    """
    from .defenses import MODELS
    from .training import with_seed

    if preset in MODELS:
        ctx = _context(data_root, cache_dir, download, seed)
        return get_or_fit(MODELS[preset], overrides, ctx)[0]
    if preset not in PRESETS:
        raise ConfigError(f"Unknown model preset {preset!r}; known: {', '.join([*PRESETS, *MODELS])}.")
    cfg = dataclasses.replace(with_seed(PRESETS[preset], seed), **overrides)
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
    from .config import DefenceSpec
    from .defenses import DEFENCES

    if name not in DEFENCES:
        raise ConfigError(f"Unknown defence {name!r}; known: {', '.join(DEFENCES)}.")
    return DefenceSpec(name, params).build(model, _context(data_root, cache_dir, download, seed))
