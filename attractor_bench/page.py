"""The leaderboard page, `results/leaderboard.html`: one static file, no server, no network.

`render(...)` fills the Jinja2 template shipped in the package (templates/leaderboard.html.j2,
autoescape on: every model name, command and reason is escaped) with the leaderboard table
(`leaderboard.table`: the cells of LEADERBOARD.md, each with the value it sorts by and its 95%
interval, drawn as a bar) and one card per model: every number with its interval and source run,
the verdict with its evidence, the figures its runs have under `results/<suite>/` (by relative
path), its weights' hashes and its runs' commands and environments. CSS and the sorting script
are inline. The page depends only on its inputs: the same leaderboard gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from . import tables

TEMPLATE = "leaderboard.html.j2"
FIGURE_TYPES = (".png", ".svg")
MODEL_FIGURE = "iterates_{name}"  # the figures a run draws for one model; the others are the run's


def _environment() -> Environment:
    return Environment(loader=PackageLoader("attractor_bench", "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


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


def _card(r, results_dir: Path, card_numbers: list[tuple], runs: dict[str, dict]) -> dict:
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
            "numbers": [_line(label, r.numbers, key) for label, key in card_numbers],
            "rejector": rejector or tables.DASH, "figures": own, "run_figures": shared,
            "runs": [{"suite": s, **runs[s]} for s in suites if s in runs]}


def render(board, header: list[str], rows: list[list], notes: list[str], rules: list[str], *, results_dir: Path,
           figure: str | None, card_numbers: list[tuple], runs: dict[str, dict], prose: dict) -> str:
    """The page's HTML: the table (`header`, `rows` of `leaderboard.Cell`), its notes and rules,
    the worst-case figure (a path relative to the page, or None) and one card per row of `board`."""
    cards = [_card(r, results_dir, card_numbers, runs) for r in board.rows]
    body = [{"cells": cells, "id": card["id"]} for cells, card in zip(rows, cards)]
    return _environment().get_template(TEMPLATE).render(
        header=header, rows=body, notes=notes, rules=rules, figure=figure, cards=cards, prose=prose,
        stale=board.stale, superseded=board.superseded, pending=board.pending)
