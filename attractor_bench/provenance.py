"""Which code made a result: `code_version()` fingerprints the source of every module that
computes numbers (training, models, defences, attacks, cells, metrics, the worst case, the data
pipeline) and the versions of the libraries doing the arithmetic. A run records it (run.json,
summary.json); the leaderboard marks a results folder whose fingerprint differs from the
current code's as stale, so that numbers from different code are never ranked side by side.
Rendering code (tables, READMEs, plots, the CLI) is left out: a change there changes no number."""

from __future__ import annotations

import importlib
import pkgutil

from . import attacks, defences, models, ood
from .cells import code_fingerprint
from .files import key, source_fingerprint

NUMBERS = ("cache", "cells", "classifier", "config", "data", "determinism", "early_stopping", "indicators", "losses", "metrics",
           "published", "recipes", "robustness", "training")


def _modules() -> list:
    own = [importlib.import_module(f"attractor_bench.{m}") for m in NUMBERS]
    for pkg in (attacks, defences, models):
        own += [pkg] + [importlib.import_module(f"{pkg.__name__}.{m.name}") for m in pkgutil.iter_modules(pkg.__path__)]
    return own


def code_version() -> str:
    """The fingerprint of the code that computes numbers (and its libraries' versions)."""
    return key(cells=code_fingerprint(), source=source_fingerprint(*_modules()))


def ood_code_version() -> str:
    """The fingerprint of the code behind an OOD run (`attractor-bench ood`): `code_version()` and
    every module of `attractor_bench.ood` but its rendering (`report`). Its own, so that OOD work
    leaves the classification runs' fingerprint (and their results) as they are, while an edit
    there marks OOD runs stale."""
    mods = [ood] + [importlib.import_module(f"{ood.__name__}.{m.name}") for m in pkgutil.iter_modules(ood.__path__)
                    if m.name != "report"]
    return key(code=code_version(), ood=source_fingerprint(*mods))
