"""The leaderboard's files, rendered from a ranked board (`leaderboard.build`): records in, pages out.

`write_leaderboard(dir)` builds the board and writes into `dir`, all or none: LEADERBOARD.md (the
Jinja2 template templates/leaderboard.md.j2), leaderboard.html (templates/leaderboard.html.j2,
autoescape on: every model name, command and reason is escaped), LEADERBOARD.csv and
LEADERBOARD.json (every number) and the worst-case figure. The table's columns are `columns.py`'s,
the goals `goals.py`'s, the rules templates/rules.txt.j2. The page is one static file, no server,
no network: the table (each 95% interval also drawn as a bar), and one card per model with every
number and its source run, the verdict with its evidence, the figures its runs have under
`results/<suite>/` (by relative path), its weights' hashes and its runs' commands and environments.
Nothing depends on the time it runs: the same board gives the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from . import columns, goals, plots, tables
from .files import atomic_folder
from .leaderboard import ALPHA, EPS_POINTS, NORM, OOD_EPS, Leaderboard, build
from .provenance import CARRIED
from .published import MNIST_LINF_03, SOURCE
from .summary import FORMAT, dumps

FILES, FIGURE = ("LEADERBOARD.md", "LEADERBOARD.csv", "LEADERBOARD.json", "leaderboard.html"), "leaderboard_worst_case.png"
PAGE = FILES[3]  # the page: the table, sortable, and one card per model
FIGURE_TITLE = "Worst case over each run's L-inf attacks"
SHOWN_REASONS = 6  # per model and suite in LEADERBOARD.md (all of them in LEADERBOARD.json and the results README)
FIGURE_TYPES = (".png", ".svg")
MODEL_FIGURE = "iterates_{name}"  # the figures a run draws for one model; the others are the run's


def _environment(escape: bool) -> Environment:
    env = Environment(loader=PackageLoader("attractor_bench", "templates"), autoescape=escape,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(pct=tables.pct, fmt=format)
    return env


_HTML, _TEXT = _environment(True), _environment(False)
RULES = tuple(_TEXT.get_template("rules.txt.j2").render(alpha=f"{ALPHA:g}", ood_eps=f"{OOD_EPS:g}").splitlines())


def _figures(results_dir: Path, suites: list[str], name: str) -> tuple[list[str], list[str]]:
    """(the model's own figures, the figures of its runs) as paths relative to `results_dir`."""
    own, shared = [], []
    for suite in suites:
        folder = results_dir / suite
        files = sorted(f for f in folder.iterdir() if f.suffix in FIGURE_TYPES) if folder.is_dir() else []
        for f in files:
            if f.stem == MODEL_FIGURE.format(name=name):
                own.append(f"{suite}/{f.name}")
            elif not f.stem.startswith(MODEL_FIGURE.format(name="")):
                shared.append(f"{suite}/{f.name}")
    return own, shared


def _number(label: str, n) -> dict:
    """One line of a card: the number in percent, its interval (a bar), its n and the run it comes from."""
    if n.value is None:
        return {"label": label, "text": tables.DASH, "ci": None, "source": ""}
    lo, hi = (n.extra or {}).get("interval") or (None, None)
    text = tables.pct(n.value) + ("" if lo is None else f" [{tables.pct(lo)}, {tables.pct(hi)}]")
    size = (n.extra or {}).get("n") or (n.extra or {}).get("n_id")
    return {"label": label, "text": text, "ci": None if lo is None else (100 * n.value, 100 * lo, 100 * hi),
            "source": (f"n = {size:,}, " if size else "") + f"{n.run['suite']}"}


def _line(label: str, numbers: dict, key: str | tuple[str, str]) -> dict:
    """A card's line for one number, or for a pair (clean / robust) shown as "a / b" without bars."""
    if isinstance(key, str):
        return _number(label, numbers[key])
    a, b = _number(label, numbers[key[0]]), _number(label, numbers[key[1]])
    return {**b, "text": f"{a['text']} / {b['text']}", "source": b["source"] or a["source"]}


def _card(r, results_dir: Path, runs: dict[str, dict]) -> dict:
    """One model's card (`r`: a leaderboard Row)."""
    ident = r.model["identity"]
    ood_run = r.numbers["ood_rejector"].run
    suites = [*r.suites, *([ood_run["suite"]] if ood_run else [])]
    own, shared = _figures(results_dir, suites, r.model["name"])
    rejector = (r.numbers["ood_rejector"].extra or {}).get("rejector")
    return {"id": f"model-{r.display}", "display": r.display, "rank": r.rank, "defence": ident["defence"]["name"],
            "randomized": "yes" if r.model["randomized"] else "no",
            "threshold": tables.DASH if ident.get("threshold") is None else f"{ident['threshold']:g}",
            "weights": ident.get("weights") or "not recorded",
            "defence_weights": list(ident["defence"].get("weights") or []),
            "verdict": r.verdict(), "unreliable": bool(r.unreliable), "reasons": r.reasons,
            "numbers": [_line(label, r.numbers, key) for label, key in columns.card_lines()],
            "rejector": rejector or tables.DASH, "figures": own, "run_figures": shared,
            "runs": [{"suite": s, **runs[s]} for s in suites if s in runs]}


def _run_environment(run: dict) -> str | None:
    """What a run ran on (recorded since component versions; shown, never compared), None if not recorded."""
    env = run.get("environment")
    if not env:
        return None
    return (f"torch {env.get('torch')}, ART {env.get('adversarial-robustness-toolbox')}, numpy {env.get('numpy')}, "
            f"{env.get('device', 'cpu')} ({env.get('processor')})")


def render_page(board: Leaderboard, results_dir: Path, figure: bool) -> str:
    """leaderboard.html: the table of LEADERBOARD.md, sortable, its notes and the rules, the
    worst-case figure and one card per model."""
    cols, rows, notes = columns.table(board)
    runs = {r["suite"]: {"command": r.get("command"), "commit": r.get("commit"), "date": r.get("date"),
                         "environment": _run_environment(r) or "not recorded"} for r in [*board.runs, *board.ood_runs]}
    cards = [_card(r, results_dir, runs) for r in board.rows]
    body = [{"cells": cells, "id": card["id"]} for cells, card in zip(rows, cards)]
    return _HTML.get_template("leaderboard.html.j2").render(
        columns=cols, rows=body, notes=notes, rules=RULES, figure=FIGURE if figure else None, cards=cards,
        prose={"alpha": f"{ALPHA:g}", "ood_eps": f"{OOD_EPS:g}", "dash": tables.DASH},
        stale=board.stale, superseded=board.superseded, pending=board.pending)


def _runs(board: Leaderboard) -> list[dict]:
    """Each run of the board as LEADERBOARD.md lists it; `links`: the recorded checks that make a run
    of earlier code current (`check_dates`: their dates, each once)."""
    return [{"suite": r["suite"], "command": r["command"], "commit": r["commit"], "date": r["date"],
             "cascade": r.get("worst_case_mode") == "cascade", "links": len(r.get("lineage") or []),
             "code": str(r.get("code"))[:12], "check_dates": list(dict.fromkeys(k["date"] for k in r.get("lineage") or [])),
             "environment": _run_environment(r)} for r in [*board.runs, *board.ood_runs]]


def render_markdown(board: Leaderboard, results_dir: Path, figure: bool) -> str:
    cols, rows, notes = columns.table(board)
    checks = {json.dumps(k, sort_keys=True): k for r in [*board.runs, *board.ood_runs] for k in r.get("lineage") or []}
    return _TEXT.get_template("leaderboard.md.j2").render(
        rules=RULES, results_name=results_dir.name, page=PAGE, header=[c.title for c in cols], rows=rows, notes=notes,
        figure=FIGURE if figure else None, flagged=[r for r in board.rows if r.reasons], shown=SHOWN_REASONS,
        ref=goals.reference(board), at=goals.AT_GOALS, at_goals=goals.at_goals(board), alpha=f"{ALPHA:g}",
        dash=tables.DASH, source=SOURCE, published=MNIST_LINF_03, runs=_runs(board), checks=list(checks.values()),
        carried=CARRIED, board=board)


def render_json(board: Leaderboard) -> str:
    rows = [{"rank": r.rank, "position": i, "model": r.display, "name": r.model["name"], **r.model["identity"],
             "randomized": r.model["randomized"],
             "unreliable": r.unreliable, "unreliable_at": r.unreliable_at, "indicators_raised": r.reasons, "suites": r.suites,
             "rank_tests": r.tests,
             "numbers": {k: n.as_json() for k, n in r.numbers.items()}} for i, r in enumerate(board.rows, 1)]
    runs = {r["suite"]: {**{k: r.get(k) for k in ("command", "commit", "date")},
                         **({"current_by": r["lineage"]} if r.get("lineage") else {})} for r in [*board.runs, *board.ood_runs]}
    stale = {r["suite"]: {"commit": r.get("commit"), "date": r.get("date"), "why": r["stale"]} for r in board.stale}
    published = [dict(zip(("paper", "link", "clean", "reported", "autoattack"), p)) for p in MNIST_LINF_03]
    return dumps({"format": FORMAT, "rules": " ".join(RULES), "rows": rows, "runs": runs, "not_on_the_leaderboard": board.pending,
                  "stale": stale, "superseded": board.superseded,
                  **({"protocol": board.protocol, "custom_evaluations": board.custom} if board.protocol else {}),
                  "attractor_at_goals": goals.at_goals(board), "ood_other_trainings": board.ood_unmatched,
                  "published_not_measured_here": {"source": SOURCE, "mnist_linf_0.3": published}})


def series(board: Leaderboard) -> dict[str, list[tuple[float, float, int]]]:
    """The figure's lines: per model, (eps, worst case, images) against L-inf eps from the run that
    gives its number at 0.3 (else at 0.1)."""
    lines = {}
    for r in board.rows:
        src = r.numbers[f"worst_case_{EPS_POINTS[1]:g}"].run or r.numbers[f"worst_case_{EPS_POINTS[0]:g}"].run
        model = next((m for m in (src or {}).get("models", []) if m["name"] == r.model["name"]), None)
        if model is not None:
            lines[r.display] = sorted((w["eps"], w["accuracy"], w["n"]) for w in model["worst_case"]
                                      if w["norm"] == NORM and not w["all_images"])
    return lines


def write_leaderboard(results_dir: str | Path, protocol: str | None = None) -> tuple[Leaderboard, list[Path]]:
    """Build the leaderboard and write its files into `results_dir`, all or none; return them. With
    `protocol` (a label, `protocol.PROTOCOL.label`) only the rows evaluated under it rank."""
    results_dir = Path(results_dir)
    board = build(results_dir, protocol)
    lines = series(board)
    with atomic_folder(results_dir) as tmp:
        if lines:
            plots.worst_case_vs_eps(lines, tmp / FIGURE, FIGURE_TITLE)
        (tmp / "LEADERBOARD.md").write_text(render_markdown(board, results_dir, bool(lines)), encoding="utf-8")
        (tmp / "LEADERBOARD.csv").write_text(columns.render_csv(board), encoding="utf-8")
        (tmp / "LEADERBOARD.json").write_text(render_json(board), encoding="utf-8")
        (tmp / PAGE).write_text(render_page(board, results_dir, bool(lines)), encoding="utf-8")
    if not lines:  # no current row to draw: an earlier board's figure would show numbers the tables no longer have
        for suffix in FIGURE_TYPES:
            (results_dir / FIGURE).with_suffix(suffix).unlink(missing_ok=True)
    return board, [results_dir / n for n in (*FILES, *([FIGURE] if lines else []))]
