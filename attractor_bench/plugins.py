"""Where attacks, defences and models come from: this package's registries, Python entry points of
installed distributions, or a `module:callable` reference written in a suite.

    attacks:  - {name: "my_pkg.attacks:make_attack", eps: [0.1]}        # a reference in the YAML
    [project.entry-points."attractor_bench.attacks"]                     # or an installed entry point
    my_attack = "my_pkg.attacks:make_attack"

The contract of each kind (what the callable takes and returns) is in docs/plugins.md
and in `attacks.AttackEntry`, `defenses.DEFENCES` and `config.ModelSpec`.
A name is looked up in that order: built in, then entry points; a reference containing ':' is
imported. Built-in names win over entry points of the same name (the clash is shown by `list`).

Importing a module runs its code, so a suite that names references is code. `references(mode)`
sets what `resolve` does with them: "import" (the default), "find" (check that the module can be
found without importing it where Python allows: the top-level package and its submodules are
located on disk, not executed; `validate` uses it, with a stand-in whose parameters, budget and
contract are not checked: `is_stand_in`) or "refuse" (`--no-plugins`). References into ART
(`art.attacks.evasion:ElasticNet`) are imported in "find" mode too: this package imports ART itself.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Iterator, Literal

from .attacks import ATTACKS, RENAMED
from .defenses import DEFENCES
from .models import MODELS
from .presets import PRESETS

GROUPS = {"attack": "attractor_bench.attacks", "defence": "attractor_bench.defenses", "model": "attractor_bench.models"}
OLD_GROUPS = {"defence": "attractor_bench.defences"}  # read with a warning until the next release
BUILT_IN = "built-in"
_REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
Mode = Literal["import", "find", "refuse"]
_mode: list[Mode] = ["import"]


@contextmanager
def references(mode: Mode) -> Iterator[None]:
    """Within the block, `resolve` imports, only finds, or refuses `module:callable` references."""
    _mode.append(mode)
    try:
        yield
    finally:
        _mode.pop()


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
    found = {ep.name: ep for ep in entry_points(group=GROUPS[kind])}
    if kind in OLD_GROUPS:  # the group was renamed with the folder (docs/release-notes.md): read the old one too
        old = {ep.name: ep for ep in entry_points(group=OLD_GROUPS[kind]) if ep.name not in found}
        if old:
            warnings.warn(f"entry points {', '.join(sorted(old))} are registered in the group {OLD_GROUPS[kind]!r}, "
                          f"renamed {GROUPS[kind]!r}: register them there (docs/plugins.md); the old group is read "
                          "until the next release.", DeprecationWarning, stacklevel=3)
        found = {**old, **found}
    return found


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
    except Exception as e:  # the module's own code failed: say which, whatever it raised
        raise PluginError(f"importing module {module_name!r} of {ref!r} raised {type(e).__name__}: {e}") from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PluginError(f"module {module_name!r} has no attribute {attr!r} (from {ref!r}).") from None
    if not callable(obj):
        raise PluginError(f"{ref!r} is not callable.")
    return obj


def find_reference(ref: str) -> None:
    """Check that the module of `ref` can be found, without running it (PluginError otherwise)."""
    if not _REFERENCE.fullmatch(ref):
        raise PluginError(f"{ref!r} is not a reference of the form 'package.module:callable'.")
    module_name = ref.partition(":")[0]
    if module_name in sys.modules:
        return
    parts, spec, path = module_name.split("."), None, None
    for i in range(len(parts)):
        name = ".".join(parts[:i + 1])
        spec = importlib.machinery.PathFinder.find_spec(name, path) if i else importlib.util.find_spec(name)
        if spec is None:
            raise PluginError(f"cannot find module {name!r} of {ref!r}. Is it installed or on PYTHONPATH?")
        path = spec.submodule_search_locations


def _stand_in(ref: str):
    """What `resolve` gives for a reference it only found: a callable taking anything."""
    def unimported(*args, **kwargs):
        raise PluginError(f"{ref} was only found, not imported (validate).")

    unimported.norm = "l2"  # the wider budget range: an outside attack's own norm is read on import
    unimported.__doc__ = f"{ref} (found, not imported)"
    unimported.stand_in = True
    return unimported


def is_stand_in(obj: Any) -> bool:
    """Whether `obj` is the stand-in of a reference that was only found, not imported: its
    signature and behaviour cannot be checked (`contracts`)."""
    return getattr(obj, "stand_in", False) is True and getattr(obj, "__name__", "") == "unimported"


# References into these packages are imported even by `validate` without --import-plugins: this
# package imports them itself, so importing them runs no outside code (ART's attack classes).
TRUSTED = ("art",)


def resolve(kind: str, name: str) -> Registered:
    """The registered object called `name` (or the object a `module:callable` reference names)."""
    if ":" in name:
        if _mode[-1] == "refuse":
            raise PluginError(f"{name!r} is outside code, and --no-plugins refuses suites that import code.")
        if _mode[-1] == "find" and name.partition(":")[0].partition(".")[0] not in TRUSTED:
            find_reference(name)
            return Registered(name, _stand_in(name), f"reference {name} (found, not imported)")
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
