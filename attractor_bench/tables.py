"""The one table renderer: Markdown tables (results READMEs, the leaderboard) and terminal tables
(the CLI), from the same header and rows, and the formatting of the numbers in them."""

from __future__ import annotations

import math

from rich.table import Table

DASH = "—"


def markdown(header: list[str], rows: list[list]) -> str:
    """A GitHub Markdown table; cells are shown with `str`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def terminal(title: str, header: list[str], rows: list[list], right: set[str] = frozenset()) -> Table:
    """The same table for the terminal (rich); columns named in `right` are right-aligned."""
    table = Table(title=title)
    for col in header:
        table.add_column(col, justify="right" if col in right else "left")
    for r in rows:
        table.add_row(*(str(c) for c in r))
    return table


def pct(v: float | None, missing: str = "n/a") -> str:
    """A fraction in percent with two decimals; `missing` for None or NaN."""
    return missing if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def fmt_eps(e: float, norm: str = "linf") -> str:
    """eps as people write it: 0 (clean), 0.1, 20/255 for L-inf, plain numbers for L2."""
    if e == 0:
        return "0 (clean)"
    if norm == "l2":
        return f"{e:g}"
    return f"{e:g}" if abs(e - round(e, 2)) < 1e-9 else f"{e * 255:.4g}/255"  # 0.1 as 0.1, 20/255 as 20/255
