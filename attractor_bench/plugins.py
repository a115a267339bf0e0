"""Where attacks, defences and models come from: this package's registries, Python entry points of
installed distributions, or a `module:callable` reference written in a suite.

    attacks:  - {name: "my_pkg.attacks:make_attack", eps: [0.1]}        # a reference in the YAML
    [project.entry-points."attractor_bench.attacks"]                     # or an installed entry point
    my_attack = "my_pkg.attacks:make_attack"

The contract of each kind (what the callable takes and returns) is in docs/plugins.md
and in `attacks.AttackEntry`, `defences.DEFENCES` and `config.ModelSpec`.
A name is looked up in that order: built in, then entry points; a reference containing ':' is
imported. Built-in names win over entry points of the same name (the clash is shown by `list`).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from .attacks import ATTACKS, RENAMED
from .defences import DEFENCES
from .models import MODELS
from .training import PRESETS

GROUPS = {"attack": "attractor_bench.attacks", "defence": "attractor_bench.defences", "model": "attractor_bench.models"}
BUILT_IN = "built-in"
_REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


class PluginError(LookupError):
    """A name that is not registered, or a reference that cannot be imported."""


@dataclass(frozen=True)
class Registered:
    name: str
    obj: Any
    origin: str  # "built-in", "entry point <distribution> (<group>)" or "reference <module:callable>"


def _builtins(kind: str) -> dict[str, Any]:
    return {"attack": ATTACKS, "defence": DEFENCES, "model": {**PRESETS, **MODELS}}[kind]


def _entry_points(kind: str) -> dict:
    return {ep.name: ep for ep in entry_points(group=GROUPS[kind])}


def _origin(ep) -> str:
    dist = getattr(ep, "dist", None)
    return f"entry point {dist.name if dist else '?'} ({ep.value})"


def import_reference(ref: str) -> Any:
    """The object `module:attr.attr` names."""
    if not _REFERENCE.fullmatch(ref):
        raise PluginError(f"{ref!r} is not a reference of the form 'package.module:callable'.")
    module_name, _, attr = ref.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise PluginError(f"cannot import module {module_name!r} of {ref!r} ({e}). Is it installed or on PYTHONPATH?") from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PluginError(f"module {module_name!r} has no attribute {attr!r} (from {ref!r}).") from None
    if not callable(obj):
        raise PluginError(f"{ref!r} is not callable.")
    return obj


def resolve(kind: str, name: str) -> Registered:
    """The registered object called `name` (or the object a `module:callable` reference names)."""
    if ":" in name:
        return Registered(name, import_reference(name), f"reference {name}")
    builtins = _builtins(kind)
    if name in builtins:
        return Registered(name, builtins[name], BUILT_IN)
    eps = _entry_points(kind)
    if name in eps:
        try:
            obj = eps[name].load()
        except Exception as e:  # a broken plugin: say which, whatever it raised
            raise PluginError(f"the {kind} entry point {name!r} ({eps[name].value}) failed to load: "
                              f"{type(e).__name__}: {e}") from e
        return Registered(name, obj, _origin(eps[name]))
    known = ", ".join([*builtins, *sorted(eps)])
    if kind == "attack" and name in RENAMED:
        raise PluginError(f"attack {name!r} is now called {RENAMED[name]}.")
    raise PluginError(f"unknown {kind} {name!r}. Choose one of: {known}; or give a 'module:callable' reference.")


def available(kind: str) -> list[tuple[str, str, Any | None]]:
    """(name, origin, object) of every registered `kind`: built-ins, then entry points (the object
    is None for an entry point that fails to load; its origin says why)."""
    builtins = _builtins(kind)
    rows = [(name, BUILT_IN, obj) for name, obj in builtins.items()]
    for name, ep in sorted(_entry_points(kind).items()):
        origin, obj = _origin(ep), None
        if name in builtins:
            origin += ", shadowed by the built-in of that name"
        try:
            obj = ep.load()
        except Exception as e:  # a broken plugin must not break the listing
            origin += f", fails to load: {type(e).__name__}: {e}"
        rows.append((name, origin, obj))
    return rows
