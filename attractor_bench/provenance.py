"""Which code made a result, and whether it is still current.

A run records the versions of the components it used (`components`: `{name: version}`, see
`attractor_bench.components`) and the environment it ran in (`environment`: Python, torch, ART,
numpy, pyautoattack, the platform and processor, the device). The environment is shown, never
keyed: a run made with another torch, ART or numpy, or on a GPU, is as current as one made here.
A number is stale only where a component it depends on has a newer version now (`stale`).

Runs made before components had versions recorded a code fingerprint (`code`) instead.
`results/CARRIED_OVER.json` holds the same-numbers checks (`scripts/same_numbers.py`) that link
those fingerprints, one to the next, and the last of them to the first component versions
(`components`): a run whose fingerprint a chain of checks links to them counts as made by those
versions (`recorded`); any other is stale.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
from pathlib import Path

from .errors import AttractorBenchError

CARRIED = "CARRIED_OVER.json"
KINDS = ("code", "ood")  # the fingerprints of classification runs and of OOD runs
VERSIONED = "component versions"  # where the last check's link ends


def _version(package: str) -> str:
    """An installed distribution's version, or "not installed" (pyautoattack is an optional extra)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment(device: str | None = None) -> dict[str, str]:
    """What a run ran on: recorded with it and shown, not part of any key."""
    import torch  # noqa: deferred, so that reading provenance needs no torch

    env = {"python": platform.python_version(), "torch": torch.__version__,
           "adversarial-robustness-toolbox": _version("adversarial-robustness-toolbox"), "numpy": _version("numpy"),
           "pandas": _version("pandas"), "scipy": _version("scipy"), "pyautoattack": _version("pyautoattack"),
           "platform": platform.platform(), "processor": platform.processor() or platform.machine()}
    if device is not None:
        env["device"] = device
    return env


def read_carried(results_dir: str | Path) -> dict:
    """`results_dir/CARRIED_OVER.json`: {"components": {name: version}, "checks": [{"code": {from, to},
    "ood": {from, to}, "old_commit", "command", "date", "checked"}, ...]}; no checks without the file."""
    path = Path(results_dir) / CARRIED
    if not path.is_file():
        return {"components": {}, "checks": []}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(doc, dict) and isinstance(doc.get("components"), dict) and isinstance(doc.get("checks"), list)
                and all(isinstance(c[k][end], str) for c in doc["checks"] for k in KINDS for end in ("from", "to"))):
            raise ValueError("wrong shape")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AttractorBenchError(f"{path}: not an object with components and checks (each with code and ood "
                                  f"{{from, to}}) ({e!r}); restore it from git.") from e
    return doc


def same_chain(code: str | None, links: list[dict], kind: str = "code", to: str = VERSIONED) -> list[dict] | None:
    """The chain of recorded checks (oldest first) that links fingerprint `code` to `to`, or None."""
    came_by, frontier = {code: None}, [code]  # fingerprint -> the link that reached it
    while frontier:
        step = []
        for node in frontier:
            for link in links:
                if link[kind]["from"] == node and link[kind]["to"] not in came_by:
                    came_by[link[kind]["to"]] = link
                    step.append(link[kind]["to"])
        frontier = step
    if to not in came_by or code == to:
        return None
    chain, node = [], to
    while came_by[node] is not None:
        chain.append(came_by[node])
        node = came_by[node][kind]["from"]
    return chain[::-1]


def recorded(run: dict, carried: dict, kind: str = "code") -> dict[str, int] | None:
    """The component versions a run was made with: its own record, or the carried-over versions for
    a fingerprint a chain of recorded checks links to them; None for a run made by other, unchecked code."""
    if isinstance(run.get("components"), dict):
        return run["components"]
    if same_chain(run.get("code"), carried["checks"], kind) is not None:
        return carried["components"]
    return None


def stale(used: dict[str, int], now: dict[str, int], names=None) -> list[str]:
    """The components of `used` (those among `names`, if given) that have a newer version now
    ("name v1 -> v2"), sorted."""
    return [f"{n} v{v} -> v{now[n]}" for n, v in sorted(used.items())
            if (names is None or n in names) and n in now and now[n] > v]
