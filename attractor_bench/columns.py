"""The leaderboard's columns, each defined once, and the views that show them.

A `Column` is a field of a leaderboard row (a number of `Row.numbers`, under the column's name, or
a fact of the row, `get`) with everything a view needs to show it: its header in the table, the
format of its cell, its n, its LEADERBOARD.csv name, its label on the page's cards and in the
terminal. Each view is a list of column names: `TABLE` (LEADERBOARD.md and leaderboard.html; at
most 9 columns), `CSV` (LEADERBOARD.csv: every number), `CARD` (the page's cards) and `TERMINAL`
(`attractor-bench leaderboard`'s output). A header or name changes here and in every view at once.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Callable

from . import tables
from .data import DISPLAY_NAMES
from .leaderboard import EPS_POINTS, OOD_EPS, OOD_SETS, ROBUST_SETS, Leaderboard, Number, Row
from .ood.report import DISPLAY_NAMES as OOD_DISPLAY

CI = " [95% CI]"


@dataclass(frozen=True)
class Column:
    name: str  # in the views below; for a number, its key in `Row.numbers`
    header: str = ""  # in the table (with CI where `ci`) and the notes under it
    cell: str = "number"  # its cell's format: number (percent, interval, n), rank, code, text or verdict
    ci: bool = False  # a number with a 95% interval: the header says so
    n: str = "n"  # the key of the number's n: the table's notes say the usual one, a cell another
    css: str = ""  # its class on the page (the column's width)
    csv: str = ""  # its LEADERBOARD.csv field (default: its name), followed by those in `csv_more`
    csv_more: tuple[str, ...] = ()  # of "_n", "_ci_low", "_ci_high", "_attack": the number's n, interval, attack
    card: str = ""  # its label on the page's cards (default: its header)
    pair: str = ""  # on a card: the column shown before it, as "pair / this" (clean / attacked)
    short: str = ""  # its header in the terminal (default: its header)
    get: Callable[[Row, int], object] | None = None  # a fact of the row (at that position), not a number

    @property
    def title(self) -> str:
        return self.header + (CI if self.ci else "")

    @property
    def sort_type(self) -> str:
        """How the page sorts the column: as numbers or as text."""
        return "num" if self.cell in ("number", "rank") else "text"


def _frac(v: float | None) -> str:
    return "" if v is None else f"{v:.6f}"


def _ident(r: Row) -> dict:
    return r.model["identity"]


_BOTH = ("_ci_low", "_ci_high")
COLUMNS = (
    Column("rank", "#", "rank", css="rank", get=lambda r, i: r.rank),
    Column("position", get=lambda r, i: i),
    Column("model", "model", "code", css="model", get=lambda r, i: r.display),
    Column("name", get=lambda r, i: r.model["name"]),
    Column("weights", get=lambda r, i: _ident(r)["weights"] or ""),
    Column("defence", "defence", "text", css="defence", get=lambda r, i: _ident(r)["defence"]["name"]),
    Column("randomized", get=lambda r, i: "yes" if r.model["randomized"] else "no"),
    Column("threshold", get=lambda r, i: _frac(_ident(r)["threshold"])),
    Column("unreliable", get=lambda r, i: {None: "", True: "yes", False: "no"}[r.unreliable]),
    Column("unreliable_at", get=lambda r, i: ";".join(r.unreliable_at)),
    Column("clean", csv_more=("_n", *_BOTH), card="clean (ranked: the run with most images)", short="clean"),
    Column("clean_on_worst_case_images", "clean", ci=True, card="clean on the worst case's images"),
    *[c for e in EPS_POINTS for c in (
        Column(f"worst_case_{e:g}", f"worst case L-inf {e:g}", ci=True, csv=f"worst_case_linf_{e:g}",
               csv_more=("_n", *_BOTH), short=f"wc {e:g}"),
        Column(f"e2e_{e:g}", f"e2e L-inf {e:g}", ci=True, csv=f"e2e_linf_{e:g}", csv_more=_BOTH,
               card=f"e2e (accepted and correct) L-inf {e:g}", short=f"e2e {e:g}"))],
    *[c for d in OOD_SETS for c in (
        Column(f"{d}_clean", csv=f"ood_auroc_{d}_clean"),
        Column(f"{d}_attacked", csv=f"ood_auroc_{d}_linf_{OOD_EPS:g}", csv_more=("_attack",), pair=f"{d}_clean",
               card=f"{DISPLAY_NAMES[d]} AUROC in the classification run, clean / attacked at L-inf {OOD_EPS:g}"))],
    Column("ood_rejector", get=lambda r, i: (r.numbers["ood_rejector"].extra or {}).get("rejector", "")),
    *[c for d in ROBUST_SETS for c in (
        Column(f"ood_{d}_clean", csv=f"ood_{d}_auroc_clean"),
        Column(f"ood_{d}_robust", csv=f"ood_{d}_auroc_robust_linf_{OOD_EPS:g}", pair=f"ood_{d}_clean",
               card=f"OOD AUROC {OOD_DISPLAY[d]}, clean / robust"))],
    Column("ood_robust_lowest", "OOD robust AUROC", n="n_id", css="ood"),
    Column("verdict", "verdict", "verdict", css="verdict", get=lambda r, i: r.verdict()),
    Column("suites", get=lambda r, i: ";".join(r.suites)),
)
BY_NAME = {c.name: c for c in COLUMNS}

TABLE = ("rank", "model", "defence", "clean_on_worst_case_images", *[f"worst_case_{e:g}" for e in EPS_POINTS],
         f"e2e_{EPS_POINTS[0]:g}", "ood_robust_lowest", "verdict")
CSV = ("rank", "position", "model", "name", "weights", "defence", "randomized", "threshold", "unreliable", "unreliable_at",
       "clean", *[k for e in EPS_POINTS for k in (f"worst_case_{e:g}", f"e2e_{e:g}")],
       *[k for d in OOD_SETS for k in (f"{d}_clean", f"{d}_attacked")], "ood_rejector",
       *[k for d in ROBUST_SETS for k in (f"ood_{d}_clean", f"ood_{d}_robust")], "suites")
CARD = ("clean", "clean_on_worst_case_images", *[f"worst_case_{e:g}" for e in EPS_POINTS], *[f"e2e_{e:g}" for e in EPS_POINTS],
        *[f"ood_{d}_robust" for d in ROBUST_SETS], *[f"{d}_attacked" for d in OOD_SETS])
TERMINAL = ("rank", "model", "clean", *[f"worst_case_{e:g}" for e in EPS_POINTS], f"e2e_{EPS_POINTS[1]:g}", "verdict")


def view(names: tuple[str, ...]) -> list[Column]:
    """The columns of a view, in its order."""
    return [BY_NAME[k] for k in names]


@dataclass
class Cell:
    """One cell of the leaderboard table: its text, the value the page sorts it by (None: missing,
    sorted last) and, for a number with a 95% interval, (value, low, high) in percent: a bar on the page."""
    text: str
    sort: float | str | None = None
    ci: tuple[float, float, float] | None = None

    def plain(self) -> str:
        """The text without its Markdown (code and bold marks), for the page."""
        return self.text.replace("**", "").strip("`")


def _interval(n: Number) -> tuple:
    return (n.extra or {}).get("interval") or (None, None)


def _n_cell(n: Number, usual: int | None, key: str = "n") -> Cell:
    """A number of the table with its interval (if any), and its n where that is not the column's usual n."""
    if n.value is None:
        return Cell(tables.DASH)
    own = (n.extra or {}).get(key)
    lo, hi = _interval(n)
    text = tables.pct(n.value) + ("" if lo is None else f" [{tables.pct(lo)}, {tables.pct(hi)}]")
    return Cell(text + ("" if own == usual else f" (n={own})"), 100 * n.value,
                None if lo is None else (100 * n.value, 100 * lo, 100 * hi))


def _cell(c: Column, r: Row, usual: dict[str, int | None]) -> Cell:
    if c.cell == "number":
        return _n_cell(r.numbers[c.name], usual[c.name], c.n)
    v = c.get(r, 0)
    text = {"rank": str(v), "code": f"`{v}`", "verdict": f"**{v}**" if r.unreliable else v}.get(c.cell, v)
    return Cell(text, v)


def _usual_n(board: Leaderboard, key: str, n: str = "n") -> int | None:
    """The n most rows of a column have (the smallest of the most common), None where no row has one."""
    ns = [(r.numbers[key].extra or {}).get(n) for r in board.rows if r.v(key) is not None]
    ns = [x for x in ns if x is not None]
    return min(ns, key=lambda x: (-ns.count(x), x)) if ns else None


def _n_notes(cols: list[Column], usual: dict[str, int | None], n_ood: int | None) -> list[str]:
    """The lines under the table that say each column's n."""
    ns = {c.header: usual[c.name] for c in cols if c.ci and usual[c.name] is not None}
    n_id = usual["ood_robust_lowest"]
    said = (f"n = {next(iter(ns.values())):,} test images behind every clean, worst-case and e2e number" if len(set(ns.values())) == 1
            else "n: " + ", ".join(f"{k} {v:,}" for k, v in ns.items()) if ns else "no clean or worst case measured")
    return [f"{said}; a number on other images says its n, as (n=...). Clean is measured in the run and on the images of "
            "the row's worst case; the clean number the ranking uses (the run with most images: all 10,000 test images "
            "where a run has them) is in LEADERBOARD.json and the page's cards.",
            f"OOD robust AUROC: the lowest over {', '.join(OOD_DISPLAY[d] for d in ROBUST_SETS)} of the model's best "
            f"rejector at L-inf {OOD_EPS:g}" + (f", n = {n_id:,} MNIST and {n_ood:,} OOD images per set (n= in a cell: "
                                                 "MNIST images)" if n_id else "")
            + "; each set's clean and robust AUROC are in the cards and LEADERBOARD.json."]


def _same_model_notes(board: Leaderboard) -> list[str]:
    """A line for each set of rows that are one model under several names: the same weights, defence and
    threshold, whatever training settings made them (two trainings that ended on the same weights, say, one of
    them stopped early)."""
    groups: dict[str, list[Row]] = {}
    for r in board.rows:
        ident = _ident(r)
        if ident["weights"]:
            groups.setdefault(repr((ident["weights"], ident["defence"], ident["threshold"])), []).append(r)
    return [f"{' and '.join(f'`{r.display}`' for r in rows)} are one model under {len(rows)} names: the same weights "
            f"(fingerprint {_ident(rows[0])['weights'][:12]}...), defence and threshold; their numbers differ only where "
            "their runs attacked other images or drew other seeds."
            for rows in groups.values() if len(rows) > 1]


def table(board: Leaderboard) -> tuple[list[Column], list[list[Cell]], list[str]]:
    """The leaderboard table (`TABLE`; the rest is in LEADERBOARD.json and the page's cards): its
    columns, one row of cells per model, and the notes under it: each column's n, the rows that are one model."""
    cols = view(TABLE)
    usual = {c.name: _usual_n(board, c.name, c.n) for c in cols if c.cell == "number"}
    rows = [[_cell(c, r, usual) for c in cols] for r in board.rows]
    return cols, rows, _n_notes(cols, usual, _usual_n(board, "ood_robust_lowest", "n_ood")) + _same_model_notes(board)


def _csv_fields(c: Column, r: Row, position: int) -> dict:
    """A column's fields in one LEADERBOARD.csv line: fractions, empty where missing."""
    name = c.csv or c.name
    if c.get is not None:
        return {name: c.get(r, position)}
    n = r.numbers[c.name]
    extra, (lo, hi) = n.extra or {}, _interval(n)
    more = {"_n": extra.get(c.n, ""), "_ci_low": _frac(lo), "_ci_high": _frac(hi), "_attack": extra.get("attack") or ""}
    return {name: _frac(n.value), **{name + k: more[k] for k in c.csv_more}}


def render_csv(board: Leaderboard) -> str:
    rows = [{k: v for c in view(CSV) for k, v in _csv_fields(c, r, i).items()} for i, r in enumerate(board.rows, 1)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["rank", "model"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def card_lines() -> list[tuple[str, str | tuple[str, str]]]:
    """The numbers of each model's card on the page: (label, Row.numbers key, or a pair shown as "a / b")."""
    return [(c.card or c.header, (c.pair, c.name) if c.pair else c.name) for c in view(CARD)]


def summary_table(board: Leaderboard):
    """The terminal's table: rank, model, the ranked numbers in percent and the verdict."""
    cols = view(TERMINAL)
    header = [c.short or c.header for c in cols]
    rows = [[c.get(r, i) if c.get else tables.pct(r.v(c.name), tables.DASH) for c in cols] for i, r in enumerate(board.rows, 1)]
    return tables.terminal("Leaderboard: worst case per sample over each run's L-inf attacks, %", header, rows,
                           right={h for h, c in zip(header, cols) if c.sort_type == "num"})
