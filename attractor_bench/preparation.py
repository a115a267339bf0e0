"""A suite's models made ready for its cells: each trained (or loaded from the model cache or the
zoo) on the run's device, with its defence and rejector built, its fingerprints (what its cells are
keyed by) and what run.json records about it. `check_run` refuses what can be refused before any
of that; `train_suite` stops after the trainings (`attractor-bench train`)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from rich.console import Console

from . import components
from . import data as data_mod
from .cache import Context, get_or_fit, get_or_train
from .cells import Defended, Workspace, cell_code, defended_code
from .config import ModelSpec, Suite, load_suite
from .contracts import Checked, check_suite, plugin_errors
from .determinism import deterministic
from .device import activate, kind, move_defence, resolve_device
from .errors import ConfigError
from .files import key, weights_fingerprint
from .plugins import BUILT_IN
from .progress import Log
from .recipes import Recipe
from . import parallel


def _history(history: dict) -> dict:
    """The short form of a training history: per stage (attractor presets) or for the one training."""
    if "best_epoch" in history:
        history = {"train": history}
    return {k: {"best_epoch": v["best_epoch"], "epochs": len(v.get("val_accuracy", v.get("val_loss", []))),
                **{m: v[m] for m in ("best_val_accuracy", "best_val_loss", "val_metric") if m in v}}
            for k, v in history.items()}



def _build_model(spec: ModelSpec, suite: Suite, ctx: Context) -> tuple[torch.nn.Module, dict]:
    """The trained model of `spec` and what the run's metadata records about it."""
    if spec.train is not None or isinstance(spec.builder, Recipe):
        if spec.train is not None:
            model, blob, cached = get_or_train(spec.train, ctx.train, ctx.val, ctx.cache_dir, ctx.progress, ctx.device)
            what = {"config": spec.train.to_dict()}
        else:
            model, blob, cached = get_or_fit(spec.builder, spec.params, ctx)
            what = {"params": {**blob["params"], **{k: getattr(model, k) for k in spec.builder.eval_defaults}}}
        return model, {"preset": spec.preset, **what, "from_cache": cached, "from_zoo": blob.get("zoo"),
                       "train_seconds": blob.get("train_seconds"),
                       "history": _history(blob["history"])}
    try:
        model = spec.builder(train=ctx.train, val=ctx.val, seed=suite.seed, **spec.params)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model {spec.name!r} ({spec.preset}) rejected its parameters {spec.params}: {e}") from e
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model {spec.name!r}: {spec.preset} returned {type(model).__name__}; an outside model must "
                          "return a trained torch.nn.Module mapping (N, 1, 28, 28) images in [0, 1] to logits (N, 10).")
    return model.eval(), {"preset": spec.preset, "origin": spec.origin, "params": spec.params}



def check_run(suite: Suite, workers: int, cluster: str | None) -> Checked:
    """What can be refused before anything is loaded or trained: the options, then every contract
    of the suite's models, defences and attacks (`contracts.check_suite`: signatures, optional
    dependencies, a dry run on two images through untrained networks)."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1 (got {workers}).")
    parallel.check_cluster(cluster)
    check_training_cost(suite)
    return check_suite(suite)



def check_training_cost(suite: Suite) -> None:
    """`loss: training` drops L_eigen, which has no input gradient only where the network is piecewise
    linear (ReLU hidden units always; the output activation too unless it is sigmoid): refuse it for a
    sigmoid-output model instead of attacking a cost the model was not trained with."""
    if not any(a.loss == "training" for a in suite.attacks):
        return
    curved = [m.name for m in suite.models if m.train is not None and m.train.output_activation.value == "sigmoid"]
    if curved:
        raise ConfigError(f"loss: training leaves out L_eigen, which has an input gradient through a sigmoid output "
                          f"({', '.join(curved)}: train.output_activation: sigmoid). Attack those models with "
                          "loss: cross_entropy, or train them with a ReLU or linear output.")



def _prepare_one(spec: ModelSpec, suite: Suite, ctx: Context, log: Log, dev: torch.device) -> tuple[Defended, dict]:
    """Train (or load) one model on `dev` and build its defence and rejector; (it, its metadata)."""
    task = log.bar.add_task(f"train or load {spec.name}", total=1)
    current = [None]

    def on_epoch(stage, epoch, max_epochs, value):  # the bar: this stage's epochs out of its maximum
        if stage != current[0]:
            current[0] = stage
            log.bar.reset(task, total=max_epochs)
        line = f"train {spec.name}: {stage}, epoch {epoch} of at most {max_epochs} (validation {value:.4f})"
        log.bar.update(task, description=line, completed=epoch)
        log.line(line)

    on_epoch.say = log.say  # checkpoint lines (a training resumed: attractor_bench.checkpoints)
    t0 = time.perf_counter()
    ctx.progress = on_epoch
    model, info = _build_model(spec, suite, ctx)
    model.to(dev)
    log.bar.update(task, description=f"{spec.name}: {'loaded from cache' if info.get('from_cache') else 'ready'}",
                   total=1, completed=1)
    try:
        defence = spec.defence.build(model, ctx)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model {spec.name!r}: defence {spec.defence.name!r} cannot be built: {e}") from e
    move_defence(defence, dev)
    rejector = suite.rejector.build(defence, ctx.val.x)
    weights = weights_fingerprint(model)
    defence_weights = [weights_fingerprint(n) for n in getattr(defence, "networks", ())]  # trained defences
    threshold = None if rejector is None else rejector.shown_threshold  # in its own units (the attractor's: T)
    meta = {**info, "defence": {"name": spec.defence.name, "origin": spec.defence.origin, "params": spec.defence.params,
                                "weights": defence_weights},
            "randomized": bool(getattr(model, "randomized", False)), "threshold": threshold,
            **({} if rejector is None else {"rejector": rejector.name}),
            "seconds_train_or_load": round(time.perf_counter() - t0, 1), "weights": weights}
    code = key(code=cell_code(), device=kind(dev))  # numbers repeat bit for bit within a device kind
    used = components.for_model(spec.preset, spec.defence.name, rejector, spec.origin, spec.defence.origin)
    meta["components"] = used
    builder = [spec.builder] if spec.origin != BUILT_IN and not isinstance(spec.builder, Recipe) else []
    defence_factory = [spec.defence.factory] if spec.defence.origin != BUILT_IN else []
    network = key(code=code, model=defended_code([u for u in used if not u.startswith(("defence.", "rejector."))], *builder),
                  weights=weights)
    fingerprint = key(code=code, model=defended_code(used, *builder, *defence_factory), weights=weights,
                      defence=[spec.defence.name, spec.defence.origin, spec.defence.params, *defence_weights],
                      threshold=None if rejector is None else repr((rejector.name, rejector.threshold)))
    return Defended(model, defence, rejector, fingerprint, network, spec.training_cost()), meta



def prepare(suite: Suite, splits: tuple, images: tuple, cache_dir, log: Log, dev: torch.device) -> tuple[Workspace, dict]:
    """The Workspace every cell of `suite` is computed from: each model trained (or loaded) on `dev`
    with its defence and rejector, beside the run's images (`load_images`); and what run.json
    records about each model. `splits` are MNIST's (train, validation) splits."""
    prepared, models = {}, {}
    for spec in suite.models:  # every model first: transfer attacks need their source's network
        ctx = Context(*splits, suite.seed, cache_dir, device=str(dev))
        prepared[spec.name], models[spec.name] = _prepare_one(spec, suite, ctx, log, dev)
    return Workspace(suite, *images, prepared), models



def train_suite(suite: Suite | str | Path, data_root: str | Path | None = None, cache_dir: str | Path | None = None,
                download: bool = True, console: Console | None = None, progress: bool = True,
                device: str | None = None) -> dict:
    """Train (or load) every model of `suite` and its defence's networks into the cache, and stop
    there: the first step of a long run (`scripts/reproduce.sh`), resumable epoch by epoch
    (`attractor_bench.checkpoints`). Returns what run.json would record about each model."""
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    dev = resolve_device(device or suite.device)
    check_run(suite, 1, None)
    log = Log(console or Console(stderr=True), progress)
    splits = data_mod.mnist_train_val(data_root, download)
    with plugin_errors(suite), deterministic(), log:
        activate(dev)
        return {spec.name: _prepare_one(spec, suite, Context(*splits, suite.seed, cache_dir, device=str(dev)), log, dev)[1]
                for spec in suite.models}
