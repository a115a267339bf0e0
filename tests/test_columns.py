"""The leaderboard's columns (attractor_bench/columns.py) are each defined once: the headers of
LEADERBOARD.md, leaderboard.html, LEADERBOARD.csv, the page's cards and the terminal all come from
that one definition. The goals (goals.yaml) are data: a changed target changes what is reported."""

from __future__ import annotations

import csv
import dataclasses
import re

from typer.testing import CliRunner

from attractor_bench import columns, goals
from attractor_bench.cli import app
from attractor_bench.page import PAGE, write_leaderboard
from test_leaderboard import attack, model, write_run

VIEWS = {"TABLE": columns.TABLE, "CSV": columns.CSV, "CARD": columns.CARD, "TERMINAL": columns.TERMINAL}


def test_each_column_is_defined_once_and_every_view_names_defined_columns():
    names = [c.name for c in columns.COLUMNS]
    assert len(names) == len(set(names)), "a column defined twice"
    for view, picked in VIEWS.items():
        assert len(picked) == len(set(picked)), f"{view} shows a column twice"
        assert set(picked) <= set(names), f"{view} names undefined columns: {set(picked) - set(names)}"
    assert set(names) == {k for picked in VIEWS.values() for k in picked}, "a column no view shows"
    assert len(columns.TABLE) <= 9  # docs/leaderboard.md: at most nine columns
    for c in columns.view(columns.CARD):
        assert c.card or c.header, f"{c.name}: a card line without a label"
        assert not c.pair or c.pair in names


def _board(tmp_path):
    res = tmp_path / "results"
    write_run(res, "s", {"att": model(wc={0.1: (0.5, 0.4, 100), 0.3: (0.2, 0.1, 100)}, weights="1"),
                         "mlp": model(clean=0.8, threshold=None, defence="none", weights="2",
                                      wc={0.1: (0.3, 0.3, 100), 0.3: (0.0, 0.0, 100)})}, {"pgd": attack()})
    return res


def _headers(res) -> dict[str, list[str]]:
    md = (res / "LEADERBOARD.md").read_text()
    html = (res / PAGE).read_text()
    with open(res / "LEADERBOARD.csv") as f:
        csv_header = next(csv.reader(f))
    return {"md": next(line for line in md.splitlines() if line.startswith("| # |")).strip("| ").split(" | "),
            "html": re.findall(r'<th scope="col" data-type="(?:num|text)" tabindex="0">([^<]*)</th>', html),
            "csv": csv_header, "html_text": [html]}


def test_the_tables_headers_are_the_column_definitions(tmp_path):
    res = _board(tmp_path)
    write_leaderboard(res)
    h = _headers(res)
    titles = [c.title for c in columns.view(columns.TABLE)]
    assert h["md"] == titles and h["html"] == titles
    assert h["csv"][:3] == ["rank", "position", "model"] and "worst_case_linf_0.3_ci_low" in h["csv"]


def test_changing_one_definition_changes_every_view(tmp_path, monkeypatch):
    """One column's header, CSV name, card label and terminal header, changed in its definition only."""
    old = columns.BY_NAME["worst_case_0.3"]
    monkeypatch.setitem(columns.BY_NAME, "worst_case_0.3", dataclasses.replace(
        old, header="robust at three tenths", csv="robust_03", card="robust (card) at three tenths", short="r.3"))
    res = _board(tmp_path)
    out = CliRunner().invoke(app, ["leaderboard", "--results-dir", str(res), "--all-runs"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    h = _headers(res)
    assert "robust at three tenths [95% CI]" in h["md"] and "robust at three tenths [95% CI]" in h["html"]
    assert not any("L-inf 0.3" in x for x in h["md"] + h["html"])
    assert {"robust_03", "robust_03_n", "robust_03_ci_low", "robust_03_ci_high"} <= set(h["csv"])
    assert "worst_case_linf_0.3" not in h["csv"]
    assert "robust (card) at three tenths" in h["html_text"][0] and "worst case L-inf 0.3<" not in h["html_text"][0]
    assert "r.3" in out.output and "wc 0.3" not in out.output


def test_a_goal_is_data_its_target_changes_the_report(tmp_path, monkeypatch):
    res = tmp_path / "results"
    write_run(res, "lb", {"attractor_at": model(clean=0.93, clean_n=100, preset="attractor_at", wc={0.1: (0.8, 0.7, 100)})},
              {"pgd": attack()})
    clean = next(g for g in goals.AT_GOALS["goals"] if g["number"] == "clean")
    write_leaderboard(res)
    md = (res / "LEADERBOARD.md").read_text()
    assert "| clean accuracy >= 98% | 93.00" in md and "| 98.00 | missed by 5.00 points |" in md
    monkeypatch.setitem(clean, "target", 90.0)
    write_leaderboard(res)
    md = (res / "LEADERBOARD.md").read_text()
    assert "| clean accuracy >= 90% | 93.00" in md and "| 90.00 | met |" in md
