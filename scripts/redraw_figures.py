"""Redraw the figures of committed results from their files alone, with the current plots.py:

- a run's `accuracy_<norm>.png` (+ .svg) from its results.csv and run.json, where run.json lists it;
- an OOD run's `accuracy_coverage.png` (+ .svg) from its ood.json;
- `leaderboard_worst_case.png` (+ .svg) from the runs' summary.json files (`leaderboard.build`).

Nothing is recomputed and no other file is written. Figures whose inputs are not in the committed
files are left as they are: `similarity.png` (per-image similarity scores) and `iterates_*.png`
(the iterates of a trained network). Usage: python scripts/redraw_figures.py [--results-dir results]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from attractor_bench import leaderboard, page, plots
from attractor_bench.ood import report as ood_report
from attractor_bench.report import draw_accuracy_figures

NOT_REDRAWN = ("similarity.png: per-image similarity scores are not in the committed files",
               "iterates_*.png: the iterates need the trained network")


def redraw_run(folder: Path) -> list[Path]:
    """A run's accuracy figures, where its run.json lists them."""
    meta = json.loads((folder / "run.json").read_text())
    listed = {f["file"] for f in meta.get("figures", [])}
    if not any(f.startswith("accuracy_") for f in listed):
        return []
    table = pd.read_csv(folder / "results.csv")
    drawn = draw_accuracy_figures(table, meta, folder.name, folder, meta.get("n_images", {}).get("mnist"))
    unlisted = [d["file"] for d in drawn if d["file"] not in listed]
    if unlisted:
        raise SystemExit(f"{folder}: drew {unlisted}, which its run.json does not list")
    return [folder / d["file"] for d in drawn]


def redraw_ood(folder: Path) -> list[Path]:
    return [ood_report.draw_figure(json.loads((folder / ood_report.META).read_text()), folder)]


def redraw_leaderboard(results_dir: Path) -> list[Path]:
    """The leaderboard figure exactly as `page.write_leaderboard` draws it, without the tables."""
    series = page.series(leaderboard.build(results_dir))
    if not series:
        return []
    return [plots.worst_case_vs_eps(series, results_dir / page.FIGURE, page.FIGURE_TITLE)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    root = parser.parse_args().results_dir
    drawn = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if (folder / "run.json").is_file() and (folder / "results.csv").is_file():
            drawn += redraw_run(folder)
        elif (folder / ood_report.META).is_file():
            drawn += redraw_ood(folder)
    drawn += redraw_leaderboard(root)
    for p in drawn:
        print(f"redrawn {p} and {plots.svg_path(p).name}")
    for why in NOT_REDRAWN:
        print(f"left as they are: {why}")


if __name__ == "__main__":
    main()
