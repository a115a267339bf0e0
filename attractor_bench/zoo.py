"""The model zoo: the trained weights of every ranked model, in safetensors (no pickle), with a
manifest, committed under `zoo/` at the repository root (RobustBench's `load_model` idea).

Layout: `zoo/manifest.json` and one `zoo/<network>.safetensors` per trained network (each once:
the undefended `mlp` behind `mlp`, `apudae`, `feature_dae` and the transfer attacks is one file;
two networks trained under different keys that ended with equal weights share one file).
The manifest has two tables:

- `networks`: per file, its SHA-256, the weights fingerprint (`files.weights_fingerprint`, the one
  the leaderboard's rows record), the model-cache key it was trained under (`cache_key`: the stem
  of `<cache>/models/<cache_key>.pt`), and how to rebuild the module (`kind`: an attractor preset's
  `config`, or a recipe's name, `params` and evaluation parameters), with its training history;
- `models`: per leaderboard name, its suite and model spec, the command that trains it, its
  network (and its defence's networks), the run that evaluated it and the protocol of that run.

`lookup(cache_key)` is what the model cache consults before it trains (`cache.get_or_train`,
`cache.get_or_fit`): a zoo network is used only where the key it was trained under is the key
asked for, so a zoo hit is the model the cache would have trained. `load(name)` returns a model
by its leaderboard name. Every read checks the file's SHA-256 first. `ATTRACTOR_BENCH_ZOO` points
elsewhere (tests); a folder without a manifest is an empty zoo.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .defenses import MODELS_INTERNAL
from .errors import AttractorBenchError, ConfigError
from .files import atomic_write, weights_fingerprint, write_text
from .models import MODELS, Activation, AttractorNet

ENV_VAR = "ATTRACTOR_BENCH_ZOO"
ROOT = Path(__file__).resolve().parents[1]  # the repository (the zoo ships with a checkout, not with a wheel)
MANIFEST = "manifest.json"
FORMAT = 1
BUDGET_BYTES = 64 * 1024 * 1024  # the whole zoo lives in the repository: keep clones small


class ZooError(AttractorBenchError):
    """A zoo file that is missing, altered or inconsistent with its manifest."""


def zoo_dir(path: str | os.PathLike | None = None) -> Path:
    return Path(path or os.environ.get(ENV_VAR) or ROOT / "zoo").expanduser()


def read_manifest(path: str | os.PathLike | None = None) -> dict:
    """The manifest (an empty one where the folder has none)."""
    f = zoo_dir(path) / MANIFEST
    if not f.is_file():
        return {"format": FORMAT, "networks": {}, "models": {}}
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ZooError(f"{f}: not valid JSON ({e}); restore it with `git checkout {f}`.") from e
    if not (isinstance(doc, dict) and doc.get("format") == FORMAT and isinstance(doc.get("networks"), dict)
            and isinstance(doc.get("models"), dict)):
        raise ZooError(f"{f}: not a zoo manifest of format {FORMAT} (networks, models); restore it with `git checkout {f}`.")
    return doc


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def state_dict(entry: dict, path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """A network's weights, after checking its file against the manifest's SHA-256."""
    f = zoo_dir(path) / entry["file"]
    if not f.is_file():
        raise ZooError(f"{f} is missing (the manifest lists it); fetch it with `git lfs pull` or `git checkout {f}`, "
                       "or pass train=True to train the model instead.")
    got = sha256(f)
    if got != entry["sha256"]:
        raise ZooError(f"{f}: SHA-256 {got[:16]}... does not match the manifest's {entry['sha256'][:16]}...: the file was "
                       f"altered or truncated; refusing to load it. Restore it with `git checkout {f}`.")
    return load_file(str(f), device="cpu")


def lookup(cache_key: str, path: str | os.PathLike | None = None) -> tuple[dict, dict] | None:
    """(the network's manifest entry, its hash-checked weights) trained under `cache_key`, or None."""
    nets = read_manifest(path)["networks"]
    entry = next((e for e in nets.values() if e.get("cache_key") == cache_key), None)
    return None if entry is None else (entry, state_dict(entry, path))


def build(entry: dict) -> torch.nn.Module:
    """An untrained module of the network's architecture, with its evaluation parameters set."""
    if entry["kind"] == "attractor":
        return AttractorNet(Activation(entry["config"]["output_activation"]))
    recipes = {**MODELS, **MODELS_INTERNAL}
    if entry.get("recipe") not in recipes:
        raise ZooError(f"zoo network {entry['file']}: unknown recipe {entry.get('recipe')!r}; known: {', '.join(recipes)}.")
    module = recipes[entry["recipe"]].make(**entry["params"])
    for k, v in entry.get("eval_params", {}).items():
        setattr(module, k, v)
    return module


def fill(module: torch.nn.Module, entry: dict, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    """`module` with the zoo network's weights, checked against the manifest's weights fingerprint."""
    module.load_state_dict(weights)
    got = weights_fingerprint(module)
    if got != entry["weights"]:
        raise ZooError(f"zoo network {entry['file']}: weights fingerprint {got} is not the manifest's {entry['weights']}.")
    return module.eval()


def blob(entry: dict) -> dict:
    """What the model cache's checkpoint would say of a zoo network (its training, not its weights)."""
    out = {k: entry.get(k) for k in ("history", "train_seconds", "device", "seed")}
    out.update({"zoo": entry["file"], "config": entry.get("config"), "recipe": entry.get("recipe"),
                "params": entry.get("params")})
    return out


def load_network(entry: dict, path: str | os.PathLike | None = None) -> torch.nn.Module:
    return fill(build(entry), entry, state_dict(entry, path))


def load(name: str, device: str | torch.device = "cpu", path: str | os.PathLike | None = None) -> torch.nn.Module:
    """The zoo's model `name` (a leaderboard name), hash-checked, in evaluation mode, on `device`."""
    doc = read_manifest(path)
    if name not in doc["models"]:
        known = ", ".join(sorted(doc["models"])) or "none yet"
        raise ConfigError(f"{name!r} is not in the zoo ({zoo_dir(path)}); it holds: {known}.")
    return load_network(doc["networks"][doc["models"][name]["network"]], path).to(device)


@dataclass
class Network:
    """One trained network to export: its module, cache blob and key, and how to rebuild it."""

    module: torch.nn.Module
    blob: dict
    cache_key: str
    kind: str  # "attractor" or "recipe"
    recipe: str | None = None
    params: dict | None = None
    eval_params: dict | None = None

    def entry(self, file: str) -> dict:
        e = {"file": file, "cache_key": self.cache_key, "kind": self.kind, "weights": weights_fingerprint(self.module),
             "device": self.blob.get("device"), "train_seconds": self.blob.get("train_seconds"),
             "history": self.blob.get("history")}
        if self.kind == "attractor":
            return {**e, "config": self.blob["config"]}
        return {**e, "recipe": self.recipe, "params": self.params, "eval_params": self.eval_params or {},
                "seed": self.blob.get("seed")}


def write(networks: dict[str, Network], models: dict[str, dict], protocol: dict | None,
          path: str | os.PathLike | None = None, budget: int = BUDGET_BYTES) -> dict:
    """Write `networks` (by file stem) as safetensors and the manifest; refuses past `budget` bytes.
    Networks trained under different keys whose weights are equal tensor for tensor (a longer training
    that early stopping ended at the same epoch) share one file, named after the first of them."""
    folder = zoo_dir(path)
    tensors = {stem: {k: v.detach().cpu().contiguous().clone() for k, v in net.module.state_dict().items()}
               for stem, net in networks.items()}
    file_of = _shared_files(tensors)
    need = sum(t.nbytes for stem in set(file_of.values()) for t in tensors[stem].values())
    if need > budget:
        raise ZooError(f"the zoo would hold {need / 2**20:.1f} MiB of weights, over its budget of {budget / 2**20:.0f} MiB; "
                       "drop networks or store them in half precision before committing.")
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for stem in sorted(set(file_of.values())):
        f = folder / f"{stem}.safetensors"
        keys = ",".join(sorted(networks[s].cache_key for s, owner in file_of.items() if owner == stem))
        atomic_write(f, lambda tmp: save_file(tensors[stem], str(tmp), metadata={"cache_keys": keys}))
        written[stem] = {"sha256": sha256(f), "bytes": f.stat().st_size}
    entries = {stem: {**net.entry(f"{file_of[stem]}.safetensors"), **written[file_of[stem]]} for stem, net in networks.items()}
    total = sum(w["bytes"] for w in written.values())
    models = {name: {**m, **{k: entries[m["network"]][k] for k in ("file", "sha256", "weights")}} for name, m in models.items()}
    doc = {"format": FORMAT, "protocol": protocol, "bytes": total, "networks": dict(sorted(entries.items())),
           "models": dict(sorted(models.items()))}
    return write_manifest(doc, path)


def write_manifest(doc: dict, path: str | os.PathLike | None = None) -> dict:
    """Write the manifest `doc` (sorted keys, one per line) into the zoo folder; returns it."""
    write_text(zoo_dir(path) / MANIFEST, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return doc


def _shared_files(tensors: dict[str, dict[str, torch.Tensor]]) -> dict[str, str]:
    """{stem: the stem whose file holds its weights}: the first stem with equal tensors (same names, shapes,
    dtypes and values), else itself."""
    owner: dict[str, str] = {}
    for stem, ts in tensors.items():
        owner[stem] = next((o for o in dict.fromkeys(owner.values()) if tensors[o].keys() == ts.keys()
                            and all(tensors[o][k].dtype == v.dtype and tensors[o][k].shape == v.shape
                                    and torch.equal(tensors[o][k], v) for k, v in ts.items())), stem)
    return owner
