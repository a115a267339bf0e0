"""Filling the zoo from a model cache: the networks a suite's run trained (the same keys, so the same
weights), written as safetensors with the manifest (`zoo.write`). Nothing is trained here: a network
missing from the cache is an error that names the command that trains it (`attractor-bench train`).

    python scripts/zoo_export.py --cache-dir ~/.cache/attractor-bench      # every leaderboard model
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import protocol, zoo
from .cache import Context, get_or_fit, get_or_train, model_path, recipe_path
from .data import mnist_train_val
from .errors import ConfigError
from .recipes import Recipe


@dataclass
class _Recording(Context):
    """A context that loads (never trains) the networks a defence asks for, and remembers them."""

    seen: list = field(default_factory=list)

    def trained(self, recipe, **params):
        self.seen.append(_network(recipe, params, self))
        return self.seen[-1].module.to(self.device)


def _missing(what: str, path: Path, suite: str) -> ConfigError:
    return ConfigError(f"{what} is not in the model cache ({path} is missing): train it first with "
                       f"`attractor-bench train {suite} --cache-dir {path.parent.parent}`, then export again.")


def _network(recipe: Recipe, params: dict, ctx: Context, suite: str = "its suite") -> zoo.Network:
    train_params, eval_params = recipe.split(params)
    path = recipe_path(recipe, train_params, ctx)
    if not path.is_file():
        raise _missing(f"{recipe.name} {train_params}", path, suite)
    module, blob, _ = get_or_fit(recipe, params, ctx)
    return zoo.Network(module, blob, path.stem, "recipe", recipe.name, train_params, eval_params)


def _model_network(spec, suite, ctx: _Recording) -> zoo.Network:
    rel = os.path.relpath(suite.path, protocol.ROOT)
    if spec.train is None:
        return _network(spec.builder, spec.params, ctx, rel)
    path = model_path(spec.train, ctx.train, ctx.val, ctx.cache_dir)
    if not path.is_file():
        raise _missing(spec.name, path, rel)
    model, blob, _ = get_or_train(spec.train, ctx.train, ctx.val, ctx.cache_dir, use_zoo=False)
    return zoo.Network(model, blob, path.stem, "attractor")


def _stem(networks: dict[str, zoo.Network], net: zoo.Network, wanted: str) -> str:
    """The file stem of `net`: the one it already has (each network once), else `wanted`, made unique."""
    same = next((s for s, n in networks.items() if n.cache_key == net.cache_key), None)
    if same is not None:
        return same
    stem = wanted if wanted not in networks else f"{wanted}-{net.cache_key[-8:]}"
    networks[stem] = net
    return stem


def evaluated_by(name: str, weights: str, results_dir: Path) -> dict | None:
    """The newest committed run whose model `name` has these weights: suite, commit, date, protocol."""
    found = []
    for f in sorted(results_dir.glob("*/run.json")):
        meta = json.loads(f.read_text(encoding="utf-8"))
        m = (meta.get("models") or {}).get(name) or {}
        if m.get("weights") == weights:
            p = protocol.satisfied(meta, name, m.get("threshold") is not None)  # a model with a rejector records its threshold
            found.append({"suite": f.parent.name, "commit": meta.get("commit"), "date": meta.get("date"), "protocol": p})
    return max(found, key=lambda r: r["date"] or "", default=None)


def export(names: list[str] | None = None, cache_dir: str | os.PathLike | None = None, data_root=None,
           results_dir: str | os.PathLike = protocol.ROOT / "results", path: str | os.PathLike | None = None,
           budget: int = zoo.BUDGET_BYTES) -> dict:
    """Write the zoo (`path`, default zoo/) from the model cache: the leaderboard models `names` (all by
    default), each with its defence's networks; returns the manifest."""
    specs = protocol.leaderboard_models()
    unknown = sorted(set(names or []) - set(specs))
    if unknown:
        raise ConfigError(f"not a leaderboard model: {', '.join(unknown)}; known: {', '.join(specs)}.")
    train, val = mnist_train_val(data_root, download=False)
    networks, models = {}, {}
    for name in names or list(specs):
        suite, spec = specs[name]
        ctx = _Recording(train, val, suite.seed, cache_dir, use_zoo=False)
        net = _model_network(spec, suite, ctx)
        stem = _stem(networks, net, name)
        spec.defence.build(net.module, ctx)  # its networks, through ctx.trained (recorded, never trained)
        rel = os.path.relpath(suite.path, protocol.ROOT)
        models[name] = {"suite": rel, "preset": spec.preset, "params": spec.params,
                        "train": None if spec.train is None else spec.train.to_dict(),
                        "defence": {"name": spec.defence.name, "params": spec.defence.params},
                        "defence_networks": [_stem(networks, n, n.recipe) for n in ctx.seen],
                        "network": stem, "command": f"attractor-bench train {rel}",
                        "run": evaluated_by(name, zoo.weights_fingerprint(net.module), Path(results_dir))}
    p = protocol.PROTOCOL
    return zoo.write(networks, models, {"name": p.name, "version": p.version, "fingerprint": p.fingerprint}, path, budget)


def refresh_runs(path: str | os.PathLike | None = None,
                 results_dir: str | os.PathLike = protocol.ROOT / "results") -> dict:
    """Point each zoo model's `run` at the newest committed run that evaluated its weights (after a run is
    regenerated), without a model cache: the weights and their files are left as they are; returns the manifest."""
    doc = zoo.read_manifest(path)
    for name, m in doc["models"].items():
        m["run"] = evaluated_by(name, m["weights"], Path(results_dir))
    return zoo.write_manifest(doc, path)
