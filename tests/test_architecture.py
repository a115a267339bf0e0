"""The shape of the code: imports flow one way (no circle, no import hidden in a function to dodge
one), and no core function grows past what a reader takes in at a glance.

One exception, stated here and in docs/architecture.md: `attractor_bench.cli` imports inside its
command functions, so that `attractor-bench --help`, `--version` and `schema` start without torch,
ART, pandas or matplotlib (tests/test_cli.py checks what `--help` loads). Nothing imports the CLI,
so its deferred imports cannot hide a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"attractor_bench": ROOT / "attractor_bench", "attractor_bench.models": ROOT / "models",
            "attractor_bench.defenses": ROOT / "defenses", "attractor_bench.attacks": ROOT / "attacks",
            "attractor_bench.ood": ROOT / "attractor_bench" / "ood"}
MAX_FUNCTION_LINES = 60
# The package's public names (attractor_bench/__init__.py) load on first use (PEP 562); nothing imports it back.
DEFERS_IMPORTS = {"attractor_bench.cli"}  # the one module that imports inside functions (above)
# The renderers: they turn records (a run's table, summary.json, ood.json) into files and pages, and
# reach nothing of the runner (which trains, attacks and loads torch), directly or through another module.
RENDERERS = {f"attractor_bench.{m}" for m in ("report", "summary", "plots", "tables", "page", "leaderboard", "records",
                                              "columns", "goals", "reproduction", "ood.report")}
RUNNER = "attractor_bench.runner"
# Modules kept small (issue 37): the leaderboard's records -> ranked board, and the modules split from it;
# the runner, which plans and orchestrates (what a cell computes is cells.py's, what a model's rows are aggregate.py's).
MAX_MODULE_LINES = {f"attractor_bench.{m}": 300 for m in ("leaderboard", "records", "columns", "goals", "page", "runner")}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg, folder in PACKAGES.items():
        for f in sorted(folder.glob("*.py")):
            mods[pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"] = f
    return mods


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    parts = parts[: len(parts) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def _imports(module: str, path: Path, mods: dict) -> tuple[set[str], list[str]]:
    """(package modules `module` imports at module level, package imports made inside functions)."""
    tree = ast.parse(path.read_text())
    edges, hidden = set(), []
    in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f)}
    in_type_checking = {id(n) for i in ast.walk(tree) if isinstance(i, ast.If) and "TYPE_CHECKING" in ast.unparse(i.test)
                        for n in ast.walk(i)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, path, node)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        targets = [t for t in targets if t in mods and t != "attractor_bench"]
        if id(node) in in_type_checking:
            continue
        if id(node) in in_function and module not in DEFERS_IMPORTS:  # the CLI's count as its imports
            hidden += [f"{module} line {node.lineno}: {t}" for t in targets]
            continue
        for t in targets:  # importing a.b.c runs the package a.b first, unless `module` is inside it
            parts = t.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                if parent in mods and not module.startswith(parent + ".") and module != parent:
                    edges.add(parent)
            edges.add(t)
    return edges - {module}, hidden


def test_no_import_circle_and_no_import_inside_a_function():
    mods = _modules()
    graph, hidden = {}, []
    for m, p in mods.items():
        graph[m], h = _imports(m, p, mods)
        hidden += h
    assert not hidden, "imports inside functions (move them to module level): " + "; ".join(hidden)
    assert not [m for m in graph if DEFERS_IMPORTS & graph[m]], "a module imports the CLI"
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t] if t in stack else [m, t]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(mods):
        if m not in state:
            visit(m, [m])


def test_the_architecture_check_catches_a_circle(tmp_path):
    """The checker itself: a two-module circle and a hidden import are found."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from attractor_bench import files\nfrom .b import x\n")
    b.write_text("def f():\n    from .a import y\n")
    mods = {"attractor_bench.a": a, "attractor_bench.b": b, "attractor_bench.files": a}
    assert "attractor_bench.b" in _imports("attractor_bench.a", a, mods)[0]
    assert _imports("attractor_bench.b", b, mods)[1] == ["attractor_bench.b line 2: attractor_bench.a"]


def _graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    return {m: _imports(m, p, mods)[0] for m, p in mods.items()}


def _reached(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module `start` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for t in graph[todo.pop()] - seen:
            seen.add(t)
            todo.append(t)
    return seen


def test_no_renderer_imports_the_runner():
    mods = _modules()
    assert RENDERERS <= set(mods), f"renderers that are not modules: {RENDERERS - set(mods)}"
    graph = _graph(mods)
    bad = [m for m in sorted(RENDERERS) if RUNNER in _reached(graph, m)]
    assert not bad, f"renderers that import the runner (directly or through another module): {bad}"


def test_the_renderer_check_sees_an_import_through_another_module(tmp_path):
    report, middle, runner = tmp_path / "report.py", tmp_path / "middle.py", tmp_path / "runner.py"
    report.write_text("from .middle import x\n")
    middle.write_text("from .runner import COLUMNS\n")
    runner.write_text("COLUMNS = []\n")
    mods = {"attractor_bench.report": report, "attractor_bench.middle": middle, RUNNER: runner}
    assert RUNNER in _reached(_graph(mods), "attractor_bench.report")
    middle.write_text("x = 1\n")
    assert RUNNER not in _reached(_graph(mods), "attractor_bench.report")


def test_the_leaderboard_modules_and_the_runner_stay_under_300_lines():
    mods = _modules()
    lines = {m: len(mods[m].read_text().splitlines()) for m in MAX_MODULE_LINES}
    over = [f"{m} ({n} lines)" for m, n in lines.items() if n > MAX_MODULE_LINES[m]]
    assert not over, "modules over their size cap (split them by concept): " + ", ".join(over)


def test_no_core_function_over_60_lines():
    long = []
    for m, p in _modules().items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{m}.{node.name} ({n} lines)")
    assert not long, "functions over 60 lines: " + ", ".join(long)
