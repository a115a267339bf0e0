"""An OOD suite: which models (by reference to the suites that define them), which images, which
budgets. Read with the same strict YAML reader as the other suites (`suitefile.read`):

    models_from: [leaderboard.yaml, leaderboard_sota.yaml]   # beside this file; every model of each
    models: [attractor, mlp]          # optional: only these (default: all of them)
    n_test: 1000                      # MNIST test images (the in-distribution half)
    n_ood: 1000                       # images of each OOD set
    ood: [fashion_mnist, cifar10_bw, uniform_noise, smooth_noise]
    eps: [0.1]                        # L-inf budgets of the score attacks
    attacks: [pgd, apgd, square]      # score attacks, each in both directions
    k_plus_one: true                  # the K+1 cross-check on models with the attractor's rejector
    budgets: {square: {n_queries: 1000}}   # optional: overrides of attacks.BUDGETS (pgd, apgd, square, k_plus_one)
    seed: 0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attractor_bench import suitefile
from attractor_bench.config import Suite, load_suite
from attractor_bench.data import DATASETS
from attractor_bench.errors import ConfigError

from . import synthetic
from .attacks import BUDGETS, SCORE_ATTACKS

KEYS = {"name", "models_from", "models", "n_test", "n_ood", "ood", "eps", "attacks", "k_plus_one", "seed", "budgets"}
OOD_SETS = (*[d for d in DATASETS if d != "mnist"], *synthetic.DISPLAY_NAMES)


@dataclass(frozen=True)
class OODSuite:
    name: str
    suites: tuple[Suite, ...]  # the referenced suites, each with only the models evaluated here
    n_test: int
    n_ood: int
    ood: tuple[str, ...]
    eps: tuple[float, ...]
    attacks: tuple[str, ...]
    k_plus_one: bool
    seed: int
    budgets: dict  # attack -> overrides of attacks.BUDGETS

    @property
    def model_names(self) -> list[str]:
        return [m.name for s in self.suites for m in s.models]


def _list(path: Path, key: str, value: Any, kind: type) -> list:
    if not isinstance(value, list) or not value or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{path}: '{key}' must be a non-empty list of {kind.__name__ if kind is not (int, float) else 'numbers'} "
                          f"(got {value!r}).")
    return value


def _positive(path: Path, key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{path}: '{key}' must be a positive integer (got {value!r}).")
    return value


def load_ood_suite(path: str | Path) -> OODSuite:
    path = Path(path)
    raw = suitefile.read(path)
    if not isinstance(raw, dict) or "models_from" not in raw:
        raise ConfigError(f"{path}: an OOD suite is a YAML mapping with at least 'models_from' (the suites whose models "
                          "it evaluates); see attractor_bench/ood/suite.py.")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; an OOD suite takes {', '.join(sorted(KEYS))}.")
    suites, seen = [], {}
    for ref in _list(path, "models_from", raw["models_from"], str):
        s = load_suite(path.parent / ref)
        for m in s.models:
            if m.name in seen:
                raise ConfigError(f"{path}: model {m.name!r} is in both {seen[m.name]} and {ref}; name each model once.")
            seen[m.name] = ref
        suites.append(s)
    wanted = raw.get("models")
    if wanted is not None:
        missing = [m for m in _list(path, "models", wanted, str) if m not in seen]
        if missing:
            raise ConfigError(f"{path}: 'models' names {', '.join(missing)}, which no suite of 'models_from' defines "
                              f"(they define {', '.join(seen)}).")
        suites = [dataclasses.replace(s, models=tuple(m for m in s.models if m.name in wanted)) for s in suites]
        suites = [s for s in suites if s.models]
    ood = _list(path, "ood", raw.get("ood", list(OOD_SETS)), str)
    bad = [d for d in ood if d not in OOD_SETS]
    if bad:
        raise ConfigError(f"{path}: unknown OOD set(s) {', '.join(bad)}; known: {', '.join(OOD_SETS)}.")
    eps = [float(e) for e in _list(path, "eps", raw.get("eps", [0.1]), (int, float))]
    if not all(0 < e <= 1 for e in eps):
        raise ConfigError(f"{path}: every eps must lie in (0, 1] (L-inf, pixels in [0, 1]); got {eps}.")
    attacks = _list(path, "attacks", raw.get("attacks", list(SCORE_ATTACKS)), str)
    bad = [a for a in attacks if a not in SCORE_ATTACKS]
    if bad:
        raise ConfigError(f"{path}: unknown score attack(s) {', '.join(bad)}; known: {', '.join(SCORE_ATTACKS)}.")
    k1 = raw.get("k_plus_one", True)
    if not isinstance(k1, bool):
        raise ConfigError(f"{path}: 'k_plus_one' must be true or false (got {k1!r}).")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"{path}: 'seed' must be an integer (got {seed!r}).")
    budgets = raw.get("budgets", {})
    if not isinstance(budgets, dict) or any(a not in BUDGETS or not isinstance(b, dict) or set(b) - set(BUDGETS[a])
                                            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                                                       for v in b.values()) for a, b in budgets.items()):
        raise ConfigError(f"{path}: 'budgets' maps attacks to positive numbers for their own keys: "
                          + "; ".join(f"{a}: {', '.join(b)}" for a, b in BUDGETS.items()) + f" (got {budgets!r}).")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{path}: 'name' must be a non-empty string (got {name!r}).")
    return OODSuite(name, tuple(suites), _positive(path, "n_test", raw.get("n_test", 1000)),
                    _positive(path, "n_ood", raw.get("n_ood", 1000)), tuple(ood), tuple(eps), tuple(attacks), k1, seed,
                    budgets)
