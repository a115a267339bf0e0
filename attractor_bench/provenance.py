"""Which code made a result: `code_version()` fingerprints the source of every module that
computes numbers (training, models, defences, attacks, cells, metrics, the worst case, the data
pipeline) and the versions of the libraries doing the arithmetic. A run records it (run.json,
summary.json); the leaderboard marks a results folder whose fingerprint differs from the
current code's as stale, so that numbers from different code are never ranked side by side.
Rendering code (tables, READMEs, plots, the CLI) is left out: a change there changes no number.

A change to that code that leaves every number it computed before as it was (an option whose
default is the old behaviour, say) still changes the fingerprint. Such a change is checked, not
assumed: `scripts/same_numbers.py --old COMMIT` runs the same suites (every model kind, every
attack and target, an OOD suite) under both versions with fresh caches and compares the tables
byte for byte; only if they are identical does `--record` add a link {from: old fingerprint, to:
new} to `results/CODE_LINEAGE.json`. `same_code(run_code, current, links)` then counts a run made
by the old code as made by the current one (the leaderboard names the checks it used). New numbers
(a new option turned on) come from runs of the new code."""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

from . import attacks, defences, models, ood
from .cells import code_fingerprint
from .errors import AttractorBenchError
from .files import key, source_fingerprint

NUMBERS = ("cache", "cells", "classifier", "config", "data", "determinism", "early_stopping", "indicators", "losses", "metrics",
           "presets", "published", "recipes", "robustness", "training")


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


LINEAGE = "CODE_LINEAGE.json"
KINDS = ("code", "ood")  # code_version() and ood_code_version()


def read_lineage(results_dir: str | Path) -> list[dict]:
    """The recorded links of `results_dir` (results/CODE_LINEAGE.json), oldest first; [] without the file."""
    path = Path(results_dir) / LINEAGE
    if not path.is_file():
        return []
    try:
        links = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(links, list) and all(isinstance(link[k][end], str) for link in links for k in KINDS
                                                for end in ("from", "to"))):
            raise ValueError("wrong shape")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AttractorBenchError(f"{path}: not a list of links with 'code' and 'ood' {{from, to}} ({e!r}); restore it "
                                  "from git or rerun scripts/same_numbers.py --record.") from e
    return links


def same_code(code: str | None, current: str, links: list[dict], kind: str = "code") -> list[dict] | None:
    """How a run made by `code` counts as made by `current`: [] for the same fingerprint, the chain of
    recorded checks (links, oldest first) from `code` to `current`, or None (made by other code)."""
    if code == current:
        return []
    came_by, frontier = {code: None}, [code]  # fingerprint -> the link that reached it
    while frontier:
        step = []
        for node in frontier:
            for link in links:
                if link[kind]["from"] == node and link[kind]["to"] not in came_by:
                    came_by[link[kind]["to"]] = link
                    step.append(link[kind]["to"])
        frontier = step
    if current not in came_by:
        return None
    chain, node = [], current
    while came_by[node] is not None:
        chain.append(came_by[node])
        node = came_by[node][kind]["from"]
    return chain[::-1]
