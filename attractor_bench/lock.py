"""The code of each component, hashed after normalization, and the lock that records it.

A component's code is its roots (`attractor_bench.components`) and what they reach inside the
package: every name in a root's body (and annotations) is resolved in its module; a function,
class or plain module-level value of the package is taken in, and its names followed in turn,
until another component's root is reached (a dependency: not hashed here, its version is carried
instead). Registries (dicts of entries) and library code are not followed.

The hash is of the normalized syntax tree: docstrings, comments, imports, type annotations,
assert messages and the text of error and log messages are left out, so that such edits change
no hash. `components.lock.json` (beside this module) records `{name: {version, hash, requires}}`;
`check()` compares it with the code (a test in the default run does), and `write()` updates it
(`scripts/lock.py`): for a component whose version was bumped freely, for one whose version stayed
only with the record of a same-numbers check that found the same bytes (`scripts/same_numbers.py
--record`) or of a move (`moved()`, `scripts/lock.py --moved OLD=NEW`: the code is the lock's code
once the moved modules are named back, so no number can change).
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import json
import re
import sys
import textwrap
from pathlib import Path
from types import ModuleType


PACKAGE = "attractor_bench"
LOCK = Path(__file__).with_name("components.lock.json")
_LOG_CALLS = {"line", "say", "info", "debug", "warning", "warn", "print", "echo", "secho"}
_SKIP_FIELDS = {"ctx", "type_comment", "type_params", "kind", "lineno", "col_offset", "end_lineno", "end_col_offset"}
_PLAIN = (int, float, str, bool, bytes, type(None))
# Orchestration, configuration and file handling: reached names there are not followed (a suite's
# values enter the keys as data; how a file is written changes no number). A component may still
# name one of their definitions as a root (the cascade's order in `config`).
NOT_FOLLOWED = {f"{PACKAGE}.{m}" for m in ("api", "cache", "cli", "components", "config", "errors", "files", "leaderboard", "lock",
                                          "parallel", "plots", "plugins", "provenance", "recipes", "report", "reproduction",
                                          "runner", "store", "suitefile", "tables", "ood.report", "ood.suite")}


def _plain(v) -> bool:
    if isinstance(v, _PLAIN):
        return True
    if isinstance(v, (tuple, list, frozenset, set)):
        return all(_plain(e) for e in v)
    if isinstance(v, dict):
        return all(_plain(k) and _plain(e) for k, e in v.items())
    return False


class _Normalize(ast.NodeTransformer):
    """Drop what does not compute: docstrings, imports, annotations, message text."""

    def _body(self, node):
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        return node

    def visit_Module(self, node):
        return self.generic_visit(self._body(node))

    def visit_ClassDef(self, node):
        return self.generic_visit(self._body(node))

    def visit_FunctionDef(self, node):
        node.returns = None
        return self.generic_visit(self._body(node))

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_arg(self, node):
        node.annotation = None
        return node

    def visit_AnnAssign(self, node):  # a dataclass field stays a statement, its annotation goes
        node.annotation = ast.Name("_", ast.Load())
        return self.generic_visit(node)

    def visit_Import(self, node):
        return None

    visit_ImportFrom = visit_Import

    def visit_Assert(self, node):
        node.msg = None
        return self.generic_visit(node)

    def visit_Raise(self, node):
        if node.exc is not None:
            node.exc = _Silence().visit(node.exc)
        return node

    def visit_Call(self, node):
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        if name in _LOG_CALLS or name.endswith(("Error", "Exception", "Warning")):
            return _Silence().visit(node)
        return self.generic_visit(node)

    def visit_Expr(self, node):  # a bare string statement is a comment
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return None
        return self.generic_visit(node)


class _Silence(ast.NodeTransformer):
    """Every string in a message becomes empty."""

    def visit_Constant(self, node):
        return ast.Constant("") if isinstance(node.value, str) else node

    def visit_JoinedStr(self, node):
        return ast.Constant("")


def _dump(node) -> str:
    """A canonical text of a syntax tree (stable across Python versions: empty fields left out)."""
    if isinstance(node, ast.AST):
        fields = [(k, _dump(v)) for k, v in ast.iter_fields(node) if k not in _SKIP_FIELDS and v not in (None, [])]
        return f"{type(node).__name__}(" + ",".join(f"{k}={v}" for k, v in fields) + ")"
    if isinstance(node, list):
        return "[" + ",".join(_dump(e) for e in node) + "]"
    return repr(node)


def normalized(source: str) -> str:
    """The normalized text of Python source (a module, or one dedented definition)."""
    tree = _Normalize().visit(ast.parse(textwrap.dedent(source)))
    return _dump(ast.fix_missing_locations(tree))


# --- the code a component reaches ------------------------------------------------------------

Node = tuple  # (module name, qualname or None for a whole module)


def _source(obj, source_of) -> str:
    if source_of is not None:
        text = source_of(obj)
        if text is not None:
            return text
    return Path(obj.__file__).read_text(encoding="utf-8") if isinstance(obj, ModuleType) else inspect.getsource(obj)


def _names(tree: ast.AST) -> set[tuple[str, ...]]:
    """Every dotted name read in `tree` (annotations included), as tuples: `a.b.c` -> ('a', 'b', 'c')."""
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute):
            parts, cur = [], n
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name):
                out.add((cur.id, *parts[::-1]))
        elif isinstance(n, ast.Name):
            out.add((n.id,))
    return out


def _module_of(obj) -> str | None:
    return obj.__name__ if isinstance(obj, ModuleType) else getattr(obj, "__module__", None)


def _targets(names: set[tuple[str, ...]], scope: dict, entry_of) -> list:
    """(node, object) pairs inside the package that `names` resolve to in `scope` (a module's globals)."""
    out = []
    for parts in names:
        if parts[0] not in scope:
            continue
        obj, trail = scope[parts[0]], [parts[0]]
        for p in parts[1:]:
            if isinstance(obj, ModuleType) or inspect.isclass(obj):
                nxt = getattr(obj, p, None)
                if nxt is None:
                    break
                obj, trail = nxt, trail + [p]
            else:
                break
        if isinstance(obj, ModuleType):
            continue
        entry = entry_of(obj)
        if entry is not None:  # a recipe or attack entry used by name (a trained network another one is built on)
            out.append((("component", entry), None))
        elif inspect.isfunction(obj) or inspect.isclass(obj):
            mod = _module_of(obj)
            if (mod or "").startswith(PACKAGE) and "<locals>" not in obj.__qualname__ and mod not in NOT_FOLLOWED:
                out.append(((mod, obj.__qualname__), obj))
        elif _plain(obj) and len(trail) == 1 and not trail[0].startswith("__"):  # a module-level constant of this scope
            mod = scope.get("__name__", "")
            if mod.startswith(PACKAGE) and mod not in NOT_FOLLOWED:
                out.append(((mod, trail[0]), obj))
    return out


def resolve(ref: str):
    """The module, function, class or value a root names ("module" or "module:qualname")."""
    mod, _, qual = ref.partition(":")
    obj = importlib.import_module(mod)
    for part in qual.split(".") if qual else ():
        obj = getattr(obj, part)
    return obj


def _owner_map(comps: dict) -> dict[Node, set[str]]:
    """Root node -> the components that own it (a module root owns every node of its module)."""
    owners: dict[Node, set[str]] = {}
    for name, c in comps.items():
        for ref in c.roots:
            mod, _, qual = ref.partition(":")
            owners.setdefault((mod, qual or None), set()).add(name)
    return owners


def _owned_by(node: Node, owners: dict[Node, set[str]]) -> set[str]:
    mod, qual = node
    out = set(owners.get((mod, None), ()))
    if qual:
        parts = qual.split(".")
        for i in range(1, len(parts) + 1):  # a class root owns its methods
            out |= owners.get((mod, ".".join(parts[:i])), set())
    return out


class Registry:
    """The components (name -> an object with `roots` and `uses`) and `entry_of(obj)`, the component
    of a registry entry object (a recipe or attack entry used by name), else None. It caches what
    it works out: `reset()` forgets it."""

    def __init__(self, comps: dict, entry_of):
        self.comps, self.entry_of, self._cache = comps, entry_of, {}

    def closure(self, name: str, source_of=None) -> tuple[tuple[tuple[Node, str], ...], tuple[str, ...]]:
        if source_of is not None:
            return _closure(name, self.comps, self.entry_of, source_of)
        if name not in self._cache:
            self._cache[name] = _closure(name, self.comps, self.entry_of, None)
        return self._cache[name]

    def code_hash(self, name: str, source_of=None) -> str:
        """The hash of component `name`'s normalized code; `source_of(obj)` may stand in for the
        files' source (None: read it), as the tests do to edit code without writing it."""
        return _hash(self.closure(name, source_of)[0])

    def dependencies(self, name: str) -> tuple[str, ...]:
        """The components `name`'s code reaches directly."""
        return self.closure(name)[1]

    def members(self, name: str) -> set[Node]:
        """The nodes of component `name` (with (module, None) for a module root, and its definitions)."""
        nodes = {n for n, _ in self.closure(name)[0]}
        for mod, qual in list(nodes):
            if qual is None:
                m = sys.modules[mod]
                nodes |= {(mod, v.__qualname__) for v in vars(m).values()
                          if (inspect.isfunction(v) or inspect.isclass(v)) and _module_of(v) == mod}
        return nodes

    def state(self, source_of=None) -> dict[str, dict]:
        """{component: {version, hash, requires}} of the code as it is."""
        out = {}
        for n, c in self.comps.items():
            nodes, requires = self.closure(n, source_of)
            out[n] = {"version": c.version, "hash": _hash(nodes), "requires": list(requires)}
        return out


def canonical(v) -> str:
    """The text of a plain value, the same in every process: a set's elements sorted (`repr` of a set of
    strings follows PYTHONHASHSEED, which would give the lock another hash in every run)."""
    if isinstance(v, (set, frozenset)):
        return f"{type(v).__name__}({{{', '.join(sorted(canonical(e) for e in v))}}})"
    if isinstance(v, (list, tuple)):
        inner = ", ".join(canonical(e) for e in v)
        return f"[{inner}]" if isinstance(v, list) else f"({inner}{',' if len(v) == 1 else ''})"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{canonical(k)}: {canonical(e)}" for k, e in v.items()) + "}"
    return repr(v)


def _hash(nodes) -> str:
    h = hashlib.sha256()
    for (mod, qual), text in nodes:
        h.update(f"{mod}:{qual}\n{text}\n".encode())
    return h.hexdigest()[:16]


def _moved_back(nodes, moves: dict[str, str]):
    """`nodes` with each moved module renamed back: `moves` is {old module: new module}
    (`attractor_bench.defences` -> `attractor_bench.defenses`); the new names go back to the old in the
    nodes' module names, in module names written as text, and where the module's last part is an
    identifier (`defenses.REJECTORS`). Nothing else in the text changes."""
    def back(text: str, new: str, old: str) -> str:
        text = re.sub(rf"{re.escape(new)}(?=[.:'])", old, text)
        last_new, last_old = new.rpartition(".")[2], old.rpartition(".")[2]
        return re.sub(rf"\b(id|attr|name|module)='{re.escape(last_new)}'", rf"\1='{last_old}'", text)

    out = []
    for (mod, qual), text in nodes:
        for old, new in moves.items():
            if mod == new or mod.startswith(new + "."):
                mod = old + mod[len(new):]
            text = back(text, new, old)
        out.append(((mod, qual), text))
    return sorted(out, key=lambda kv: (kv[0][0], kv[0][1] or ""))


def moved(registry: "Registry", lock: dict, moves: dict[str, str]) -> dict[str, dict]:
    """The components whose code changed at the same version only because modules moved: with the
    moved modules renamed back (`_moved_back`), their code hashes to the lock's hash. {name: the
    record `write` keeps beside it}. A component whose code differs in anything else is not in it."""
    out = {}
    for n, c in registry.comps.items():
        old = lock.get(n)
        if old is None or old["version"] != c.version:
            continue
        nodes = registry.closure(n)[0]
        if _hash(nodes) != old["hash"] and _hash(_moved_back(nodes, moves)) == old["hash"]:
            out[n] = {"moved": {o: m for o, m in sorted(moves.items())}, "from_hash": old["hash"]}
    return out


def _closure(name: str, comps: dict, entry_of, source_of) -> tuple[tuple[tuple[Node, str], ...], tuple[str, ...]]:
    """((node, normalized text) of every node of component `name`, sorted; the components it requires)."""
    owners, comp = _owner_map(comps), comps[name]
    texts: dict[Node, str] = {}
    deps: set[str] = set()
    todo: list[tuple[Node, object]] = []
    for ref in (*comp.roots, *comp.uses):
        mod, _, qual = ref.partition(":")
        todo.append(((mod, qual or None), resolve(ref)))
    while todo:
        node, obj = todo.pop()
        if node in texts:
            continue
        mod, qual = node
        if qual is not None and (mod, None) in texts:  # inside a module root already taken in
            continue
        if isinstance(obj, ModuleType) or inspect.isfunction(obj) or inspect.isclass(obj):
            src = _source(obj, source_of)
            texts[node] = normalized(src)
            scope = obj.__dict__ if isinstance(obj, ModuleType) else sys.modules[_module_of(obj)].__dict__
            found = _targets(_names(_Normalize().visit(ast.parse(textwrap.dedent(src)))), scope, entry_of)
        else:
            texts[node] = canonical(obj)
            found = []
        for n2, o2 in found:
            if n2[0] == "component":
                if n2[1] != name:
                    deps.add(n2[1])
                continue
            mine = name in _owned_by(n2, owners)
            others = _owned_by(n2, owners) - {name}
            if others and not mine:
                deps |= others
            elif n2 not in texts:
                todo.append((n2, o2))
    return tuple(sorted(texts.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))), tuple(sorted(deps))


# --- the lock ----------------------------------------------------------------------------------

def read(path: Path = LOCK) -> dict:
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def problems(lock: dict, now: dict) -> list[str]:
    """What differs between the lock and the code's state (`Registry.state`), one line each with
    what to do; [] when they agree."""
    out = []
    for n, s in now.items():
        old = lock.get(n)
        if old is None:
            out.append(f"component {n} (version {s['version']}) is not in the lock: a new component; run "
                       "`python scripts/lock.py` to add it.")
        elif s["version"] < old["version"]:
            out.append(f"component {n}: version {s['version']} is lower than the lock's {old['version']}; versions only go up.")
        elif s["version"] > old["version"]:
            out.append(f"component {n}: version bumped {old['version']} -> {s['version']}; run `python scripts/lock.py` to record "
                       "its new code (numbers it computed before are stale from now on).")
        elif s["hash"] != old["hash"]:
            out.append(f"component {n}: its code changed (hash {old['hash']} -> {s['hash']}) at version {s['version']}. If its "
                       f"numbers change, bump its version in {_where(n)}; if they do not, run `python scripts/same_numbers.py "
                       f"--old <commit> --record`, which updates the lock only when the numbers are the same byte for byte (a module that "
                       f"only moved: `python scripts/lock.py --moved OLD.MODULE=NEW.MODULE`).")
        elif s["requires"] != old.get("requires", s["requires"]):
            out.append(f"component {n}: now requires {s['requires']} (lock: {old.get('requires')}); run `python scripts/lock.py`.")
    for n in sorted(set(lock) - set(now)):
        out.append(f"component {n} is in the lock but no longer exists; run `python scripts/lock.py` to drop it.")
    return out


def _where(name: str) -> str:
    if name.startswith("attack."):
        return "its ATTACKS entry (attacks/__init__.py, `version=`)"
    if name.startswith("recipe."):
        return "its Recipe (`version=`)"
    return "attractor_bench/components.py"


def write(now: dict, lock: dict, checked: dict[str, dict] | None = None, path: Path = LOCK) -> list[str]:
    """Record `now` in the lock for the components that were bumped, added, removed or re-required,
    and for those whose code changed at the same version only where `checked` holds the record of
    the same-numbers check that covered them. Returns the names updated; raises ValueError for a
    changed component without a bump or a check."""
    checked = checked or {}
    new, updated, refused = dict(lock), [], []
    for n, s in now.items():
        old = lock.get(n)
        if old is not None and s["version"] == old["version"] and s["hash"] != old["hash"]:
            if n not in checked:
                refused.append(n)
                continue
            new[n] = {**s, "checked": checked[n]}
            updated.append(n)
        elif old is None or s["version"] != old["version"] or s["requires"] != old.get("requires"):
            new[n] = s
            updated.append(n)
    for n in set(lock) - set(now):
        del new[n]
        updated.append(n)
    if refused:
        raise ValueError("the code of " + ", ".join(refused) + " changed without a version bump: bump each version if its "
                         "numbers change, else run `python scripts/same_numbers.py --old <commit> --record`.")
    path.write_text(json.dumps(dict(sorted(new.items())), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return sorted(updated)
