"""The benchmark's figures, drawn with matplotlib, each written as a PNG (at DPI, for print) and an
SVG beside it (the same name, `.svg`).

- `accuracy_vs_eps`: accuracy on MNIST (%) against the perturbation budget eps, one panel per
  model, one series per attack of one norm (colour per attack label, line style per target,
  marker per kind) and the per-sample worst case over those attacks in thick black; the clean
  accuracy is one black point at eps 0. Every point is a measured one, with its 95%
  Clopper-Pearson interval as a band (an error bar on a point with no measured neighbour), and
  a segment joins two points of a series only where no eps lies between them that another series
  of the panel was measured at (the clean point is never joined). The x ticks are the measured
  eps, written by `tables.fmt_eps`. The paper reports these numbers at a single eps (20/255, its
  Tables 1-2); the curve shows how they change with the budget.
- `worst_case_vs_eps`: the leaderboard figure, worst-case robust accuracy (%) against eps, one
  series per model (colour, line style and marker each its own), drawn the same way.
- `similarity_histograms`: the paper's Figures 8 and 13, the distribution of the Pearson
  similarity between an input and its reconstruction for in-distribution (MNIST) and
  out-of-distribution (Fashion-MNIST, CIFAR-10-bw) samples, clean or attacked, with the
  rejection threshold and the share of each set that the rejector accepts (similarity >=
  threshold). One row per model, one column per condition.
- `accuracy_coverage`: a rejector's accuracy/coverage curve (selective classification): as the
  threshold moves, the accuracy on the accepted MNIST images against the share accepted, one panel
  per model, one colour per rejector, solid clean and dashed under attack, the rejector's own
  threshold marked, with the 95% Clopper-Pearson band of each curve where the number of MNIST
  images is given; one legend under the panels.
- `iterates`: the paper's Figures 11 and 12 redrawn to show what changes: one input attacked at a
  few eps (rows: the clean input, the largest eps, and in between the eps where the predictions
  change, at most `ITERATE_ROWS`), and per row the attacked input x_0, the perturbation
  x_0 - clean input, what the first iteration changes (x_1 - x_0), what all of them change
  (x_K - x_0) and the last iterate x_K, with the class predicted along the iterates (red where
  it is wrong).

Every function draws on its own `matplotlib.figure.Figure` with the Agg canvas (pyplot is not
used, so importing this module leaves the user's backend alone), saves at a fixed dpi without
the "Software", "Creator" or "Date" metadata and with a fixed SVG hash salt (the same inputs give
byte-identical files), writes each file to a temporary file in the target's folder and moves it
onto the target with `os.replace`, and returns the PNG's Path. Eps is in pixel units of images
scaled to [0, 1]; accuracies and shares are drawn in percent. Series are told apart by colour
(`PALETTE`: 12 colours apart from each other, tab20 beyond), line style and marker at once.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps, rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import ScaledTranslation

from .data import DISPLAY_NAMES
from .files import atomic_write
from .summary import interval
from .tables import fmt_eps

__all__ = ["accuracy_vs_eps", "worst_case_vs_eps", "accuracy_coverage", "similarity_histograms", "iterates", "accepted_share",
           "DPI", "PALETTE", "svg_path"]

DPI = 200
NORMS = {"linf": "L∞", "l2": "L2"}
# Okabe-Ito's colour-blind-safe set (yellow and black left out) and Tol's darker tones: 12 colours
# at least 0.24 apart in RGB; black is the worst case's
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
           "#882255", "#7F7F7F", "#9467BD", "#661100", "#332288", "#44AA99")
_LINE_CYCLE = ("-", "--", "-.", ":")
_MARKER_CYCLE = ("o", "s", "^", "D", "v", "P", "X")
_DATASET_ORDER = ["mnist", "fashion_mnist", "cifar10_bw"]
_DATASET_COLOURS = {"mnist": "tab:blue", "fashion_mnist": "tab:orange", "cifar10_bw": "tab:green"}
_EXTRA_COLOURS = ["tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"]
_MARKERS = {"gradient": "o", "score": "s", "decision": "^"}
_LINESTYLES = {"network": "-", "pipeline": "--", "bpda": "-.", "transfer": ":"}
_TABLE_COLUMNS = ("model", "attack", "eps", "dataset", "metric", "value")
_BINS = np.linspace(-1.0, 1.0, 51)
_BAND_ALPHA = 0.15
_SVG_META = {"Date": None, "Creator": None}


# --------------------------------------------------------------------------- helpers

def svg_path(path: str | Path) -> Path:
    """The SVG written beside the PNG `path`."""
    return Path(path).with_suffix(".svg")


def _save(fig: Figure, path: Path) -> Path:
    """Write `fig` as PNG onto `path` and as SVG beside it (`svg_path`), each atomically
    (`files.atomic_write`) and deterministically (fixed dpi and hash salt, no dated metadata)."""
    FigureCanvasAgg(fig)  # the Agg canvas, whatever the user's default backend is
    with rc_context({"svg.hashsalt": "attractor-bench"}):
        atomic_write(svg_path(path), lambda tmp: fig.savefig(tmp, format="svg", metadata=_SVG_META))
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None}))


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {sorted(NORMS)}, got {norm!r}")


def _eps_label(norm: str | None) -> str:
    if norm is None:
        return "eps (L∞ norm, pixel units, images in [0, 1])"
    return f"eps ({NORMS[norm]} norm, pixel units, images in [0, 1])"


def _colours(labels) -> dict[str, tuple]:
    """One colour per label, assigned in sorted label order: `PALETTE` up to 12 labels, tab20
    beyond (cycling past 20)."""
    labels = sorted(set(labels))
    if len(labels) <= len(PALETTE):
        return {lab: to_rgba(PALETTE[i]) for i, lab in enumerate(labels)}
    cmap = colormaps["tab20"]
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


def _styles(labels) -> dict[str, dict]:
    """Colour, line style and marker per label in sorted order; the three cycle with different
    periods, so labels next to each other (attractor_at_01, attractor_at_01_long) differ in all three."""
    colours = _colours(labels)
    return {lab: {"color": colours[lab], "ls": _LINE_CYCLE[i % len(_LINE_CYCLE)], "marker": _MARKER_CYCLE[i % len(_MARKER_CYCLE)]}
            for i, lab in enumerate(sorted(colours))}


def _finite_points(points) -> list[tuple]:
    pts = [tuple(float(v) for v in p) for p in points]
    return sorted(p for p in pts if math.isfinite(p[0]) and math.isfinite(p[1]))


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = max(1, min(n, max_cols))
    return math.ceil(max(n, 1) / cols), cols


def _runs(xs: list[float], grid) -> list[list[int]]:
    """Indices of a series' sorted eps `xs`, split into the runs a line may join: never the clean
    point (eps 0) to an attacked one, never two points with an eps of `grid` (what the panel
    measured) between them that the series was not measured at."""
    runs: list[list[int]] = []
    for i, x in enumerate(xs):
        prev = xs[runs[-1][-1]] if runs else None
        if prev is not None and prev > 0 and not any(prev + 1e-12 < g < x - 1e-12 for g in grid):
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _bounds(acc: float, n: float | None) -> tuple[float, float]:
    """The 95% Clopper-Pearson interval of `acc` on `n` images (NaN, NaN without n)."""
    if n is None or not math.isfinite(n) or n < 1 or not math.isfinite(acc):
        return float("nan"), float("nan")
    lo, hi = interval(acc, int(n))
    return lo, hi


def _draw_series(ax, points, grid, style: dict, **kw) -> Line2D | None:
    """Points (eps, accuracy in [0, 1], lower, upper) in percent: a marker at each, lines within the
    runs of `_runs`, the interval as a band over each run (an error bar on a lone point)."""
    pts = sorted(points)
    xs = [p[0] for p in pts]
    handle = None
    for run in _runs(xs, grid):
        x = np.array([xs[i] for i in run])
        y, lo, hi = (100 * np.array([pts[i][k] for i in run]) for k in (1, 2, 3))
        (h,) = ax.plot(x, y, **style, **kw)
        handle = handle or h
        if np.isnan(lo).any() or np.isnan(hi).any():
            continue
        if len(run) > 1:
            ax.fill_between(x, lo, hi, color=style["color"], alpha=_BAND_ALPHA, lw=0, zorder=1)
        else:
            ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="none", ecolor=style["color"], elinewidth=1, capsize=3, zorder=1)
    return handle


def _eps_axis(ax, grid, norm: str) -> None:
    """x ticks at the measured eps, labelled by `tables.fmt_eps` (0 as "0": the legend names the clean
    point; slanted where there are many)."""
    grid = sorted(set(grid))
    many = len(grid) > 6
    ax.set_xticks(grid, [fmt_eps(e, norm) if e else "0" for e in grid], rotation=60 if many else 0, ha="right" if many else "center",
                  fontsize="x-small" if many else "small")
    span = (grid[-1] - grid[0]) if len(grid) > 1 else 1.0
    ax.set_xlim(grid[0] - 0.03 * span, grid[-1] + 0.03 * span)


def _bottom_xlabels(axes, ncols: int, text: str) -> None:
    """The x label on each panel with no panel below it (a figure-level one would collide with the
    legend under the panels)."""
    for i, ax in enumerate(axes):
        if i + ncols >= len(axes):
            ax.set_xlabel(text)


def _percent_axis(ax) -> None:
    ax.set_ylim(-2, 102)
    ax.set_yticks(range(0, 101, 20))
    ax.grid(True, alpha=0.3)


def accepted_share(scores, threshold: float) -> float:
    """Share (in [0, 1]) of the non-NaN `scores` that the rejector accepts (score >= threshold);
    NaN when no score is left or the threshold is None/NaN."""
    s = np.asarray(scores, dtype=float).ravel()
    s = s[~np.isnan(s)]
    if s.size == 0 or threshold is None or np.isnan(threshold):
        return float("nan")
    return float(np.mean(s >= threshold))


def _dataset_name(dataset: str) -> str:
    return DISPLAY_NAMES.get(dataset, dataset)


def _legend_text(dataset: str, scores, threshold: float) -> str:
    """Legend entry of one histogram, e.g. "MNIST (96.1% accepted, n=1000)"."""
    s = np.asarray(scores, dtype=float).ravel()
    n, dropped = int(np.sum(~np.isnan(s))), int(np.sum(np.isnan(s)))
    share = accepted_share(s, threshold)
    parts = ([] if np.isnan(share) else [f"{100 * share:.1f}% accepted"]) + [f"n={n}"]
    if dropped:
        parts.append(f"{dropped} NaN dropped")
    return f"{_dataset_name(dataset)} ({', '.join(parts)})"


def _threshold_text(threshold: float) -> str:
    return f"threshold {threshold:.2f}"


# --------------------------------------------------------------------------- accuracy vs eps

def _series(table: pd.DataFrame, attacks: dict[str, dict], norm: str = "linf") -> dict[str, dict[str, list[tuple[float, float]]]]:
    """The lines of `accuracy_vs_eps`: {model: {label: [(eps, accuracy in [0, 1]), ...]}}.

    Labels are the attacks of `attacks` with this norm (sorted) and then `worst_case_<norm>`;
    each line starts with the clean accuracy at eps 0 (when the table has it) and goes on through
    the label's eps > 0 in increasing order (several rows at one eps are averaged, NaN dropped).
    MNIST accuracy rows only; other attacks, `worst_case_*_all_images` and `sanity` rows are
    ignored. Models in order of first appearance; a model with no line of this norm is left out.
    """
    _check_norm(norm)
    missing = [c for c in _TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"result table lacks columns {missing}")
    for label, spec in attacks.items():
        if "norm" not in spec:
            raise ValueError(f"attack {label!r} has no 'norm'")
    labels = sorted(lab for lab, spec in attacks.items() if spec["norm"] == norm) + [f"worst_case_{norm}"]
    t = table[(table["dataset"] == "mnist") & (table["metric"] == "accuracy")]
    t = t[t["value"].notna() & t["eps"].notna()]
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for model in pd.unique(t["model"]):
        m = t[t["model"] == model]
        clean = m[(m["attack"] == "none") & (m["eps"] == 0)]["value"]
        start = [(0.0, float(clean.mean()))] if len(clean) else []
        lines = {}
        for label in labels:
            rows = m[(m["attack"] == label) & (m["eps"] > 0)]
            if rows.empty:
                continue
            points = rows.groupby("eps", sort=True)["value"].mean()
            lines[label] = start + [(float(e), float(v)) for e, v in points.items()]
        if lines:
            out[str(model)] = lines
    return out


def _sizes(table: pd.DataFrame, model: str, label: str, n_clean: int | None) -> dict[float, float]:
    """eps -> the MNIST images of `model`'s `label` rows (their `n_samples`; `n_clean` where a cell
    has none: it saw every image)."""
    t = table[(table["model"] == model) & (table["attack"] == label) & (table["dataset"] == "mnist")
              & (table["metric"] == "n_samples")]
    return {float(e): float(v) for e, v in zip(t["eps"], t["value"])}


def _with_bounds(points, sizes: dict[float, float], n_clean: int | None) -> list[tuple[float, float, float, float]]:
    """(eps, accuracy, lower, upper): the 95% interval on the images of each point (eps 0: `n_clean`)."""
    out = []
    for e, a in points:
        n = n_clean if e == 0 else next((v for k, v in sizes.items() if math.isclose(k, e, rel_tol=1e-5)), n_clean)
        out.append((e, a, *_bounds(a, n)))
    return out


def _accuracy_panel(ax, table, model: str, lines: dict, attacks: dict, styles: dict, norm: str, n_clean) -> dict:
    """One model's panel: the clean point, one series per attack, the worst case; returns the handles."""
    wc, handles = f"worst_case_{norm}", {}
    grid = sorted({e for pts in lines.values() for e, _ in pts})
    attacked = [e for e in grid if e > 0]
    for label, points in lines.items():
        pts = _with_bounds(points, _sizes(table, model, label, n_clean), n_clean)
        clean = [p for p in pts if p[0] == 0]
        if clean and "clean" not in handles:
            handles["clean"] = _draw_series(ax, clean[:1], grid, {"color": "black", "marker": "o", "ls": "none"}, ms=6, zorder=4)
        style = ({"color": "black", "marker": "o", "ls": "-"} if label == wc else
                 {"color": styles[label], "marker": _MARKERS.get(attacks[label].get("kind"), "D"),
                  "ls": _LINESTYLES.get(attacks[label].get("target"), "-")})
        h = _draw_series(ax, [p for p in pts if p[0] > 0], attacked, style, lw=3 if label == wc else 1.5, ms=5,
                         zorder=3 if label == wc else 2)
        if h is not None:
            handles[label] = h
    ax.set_title(model)
    _eps_axis(ax, grid, norm)
    _percent_axis(ax)
    return handles


def _accuracy_legend(fig: Figure, handles: dict, attacks: dict, norm: str, legend_cols: int) -> None:
    wc = f"worst_case_{norm}"
    order = ([k for k in ("clean",) if k in handles] + sorted(k for k in handles if k not in ("clean", wc))
             + ([wc] if wc in handles else []))
    texts = {"clean": "clean accuracy (eps 0)", wc: f"worst case per sample over the {NORMS[norm]} attacks"}
    labels = [texts.get(k) or f"{k} ({attacks[k].get('target', '?')}, {attacks[k].get('kind', '?')})" for k in order]
    fig.legend([handles[k] for k in order], labels, loc="outside lower center", ncols=legend_cols, fontsize="small",
               title="bands and bars: 95% Clopper-Pearson intervals; lines join neighbouring measured eps only",
               title_fontsize="small")


def _accuracy_figure(table: pd.DataFrame, attacks: dict[str, dict], title: str, norm: str = "linf",
                     n_clean: int | None = None) -> Figure:
    series = _series(table, attacks, norm)
    colours = _colours(lab for lab, spec in attacks.items() if spec["norm"] == norm)
    nrows, ncols = _grid(len(series))
    n_entries = len(colours) + 2
    legend_cols = min(n_entries, 4 if ncols > 1 else 2)
    legend_h = 0.25 * math.ceil(n_entries / legend_cols) + 0.3
    fig = Figure(figsize=(max(6.0, 4.2 * ncols), 3.4 * nrows + legend_h + 1.0), layout="constrained")
    fig.suptitle(title)
    if not series:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, f"no {NORMS[norm]} attack results", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    handles: dict[str, Line2D] = {}
    for ax, (model, lines) in zip(axes, series.items()):
        for k, h in _accuracy_panel(ax, table, model, lines, attacks, colours, norm, n_clean).items():
            handles.setdefault(k, h)
    for ax in axes[len(series):]:
        ax.set_visible(False)
    _bottom_xlabels(axes[:len(series)], ncols, _eps_label(norm))
    fig.supylabel("robust accuracy on MNIST (%), eps 0: clean", fontsize="medium")
    _accuracy_legend(fig, handles, attacks, norm, legend_cols)
    return fig


def accuracy_vs_eps(table: pd.DataFrame, attacks: dict[str, dict], path: Path, title: str, norm: str = "linf",
                    n_clean: int | None = None) -> Path:
    """Accuracy on MNIST (%) against eps per model, for the attacks of one `norm` and their worst case.

    `table` is a run's tidy result table (model, attack, eps, dataset, metric, value); `attacks`
    maps each attack label to a dict with at least "norm", "kind" and "target". See `_series` for
    the rows used. `n_clean`: the run's MNIST test images (the n of a cell without `n_samples`
    rows); without it no intervals are drawn. Writes a PNG to `path` (and the SVG beside it) and
    returns it.
    """
    return _save(_accuracy_figure(table, attacks, title, norm, n_clean), path)


# --------------------------------------------------------------------------- leaderboard

def _worst_case_figure(series: dict[str, list[tuple]], title: str, ylabel: str) -> Figure:
    styles = _styles(series)
    fig = Figure(figsize=(8.0, 4.5), layout="constrained")
    ax = fig.add_subplot()
    clean = {m: [p[:2] + tuple(_bounds(p[1], p[2] if len(p) > 2 else None)) for p in _finite_points(pts)]
             for m, pts in series.items()}
    grid = sorted({p[0] for pts in clean.values() for p in pts})
    handles, names = [], []
    for model, pts in clean.items():
        h = _draw_series(ax, pts, grid, styles[model], lw=1.8, ms=5)
        if h is not None:
            handles.append(h)
            names.append(model)
    ax.set_title(title)
    ax.set_xlabel(_eps_label(None))
    ax.set_ylabel(ylabel)
    if grid:
        _eps_axis(ax, grid, "linf")
    _percent_axis(ax)
    if handles:
        fig.legend(handles, names, loc="outside right upper", fontsize="small", title="model\n(bands: 95% interval)")
    return fig


def worst_case_vs_eps(series: dict[str, list[tuple]], path: Path, title: str,
                      ylabel: str = "worst-case robust accuracy (%)") -> Path:
    """One series per model: points (eps, accuracy in [0, 1]) or (eps, accuracy, n images), drawn
    in percent, with the 95% Clopper-Pearson band where n is given; legend on the right."""
    return _save(_worst_case_figure(series, title, ylabel), path)


# --------------------------------------------------------------------------- accuracy / coverage

_CONDITION_STYLES = ["-", "--", ":", "-."]


def _coverage_band(ax, cov, acc, n_images: int | None, colour) -> None:
    """The 95% Clopper-Pearson band of an accuracy/coverage curve: accuracy on round(coverage * n) images."""
    if not n_images:
        return
    bounds = np.array([_bounds(a, round(c * n_images)) for c, a in zip(cov, acc)])
    ok = ~np.isnan(bounds).any(axis=1)
    if ok.sum() > 1:
        ax.fill_between(100 * np.asarray(cov)[ok], 100 * bounds[ok, 0], 100 * bounds[ok, 1], color=colour,
                        alpha=_BAND_ALPHA, lw=0)


def _coverage_legend(fig: Figure, colours: dict, conditions: list[str]) -> None:
    """One legend under the panels: a colour per rejector, a line style per condition, the threshold dot."""
    handles = [Line2D([], [], color=c, lw=2) for c in colours.values()]
    handles += [Line2D([], [], color="black", ls=_CONDITION_STYLES[j % len(_CONDITION_STYLES)], lw=1.4)
                for j in range(len(conditions))]
    handles.append(Line2D([], [], color="black", marker="o", ls="none", ms=4))
    texts = [f"rejector: {r}" for r in colours] + list(conditions) + ["the rejector's own threshold"]
    fig.legend(handles, texts, loc="outside lower center", ncols=min(len(texts), 4), fontsize="small",
               title="bands: 95% Clopper-Pearson intervals of the accuracy on the accepted images", title_fontsize="small")


def _accuracy_coverage_figure(panels: dict[str, dict[str, dict]], title: str, n_images: int | None = None) -> Figure:
    """panels: model -> rejector -> {"threshold": T, "curves": {condition: (coverage, accuracy, accepted share at T)}}."""
    rows, cols = _grid(len(panels))
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows + 1.3), layout="constrained")
    colours = _colours({r for p in panels.values() for r in p})
    conditions = sorted(dict.fromkeys(c for p in panels.values() for e in p.values() for c in e["curves"]),
                        key=lambda c: c != "clean")  # clean first (solid), whatever order ood.json keeps
    axes = []
    for i, (model, rejectors) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        axes.append(ax)
        for r, entry in rejectors.items():
            for cond, (cov, acc, at_t) in entry["curves"].items():
                style = _CONDITION_STYLES[conditions.index(cond) % len(_CONDITION_STYLES)]
                ax.plot(100 * np.asarray(cov), 100 * np.asarray(acc), ls=style, lw=1.4, color=colours[r])
                _coverage_band(ax, cov, acc, n_images, colours[r])
                if at_t is not None and at_t[1] is not None and 0 < at_t[0] <= 1:
                    ax.plot([100 * at_t[0]], [100 * at_t[1]], marker="o", ms=4, color=colours[r], ls="none")
        ax.set_title(model, fontsize="medium")
        ax.set_xlim(0, 100)
        _percent_axis(ax)
    _bottom_xlabels(axes, cols, "MNIST images accepted (%)")
    fig.supylabel("accuracy on the accepted MNIST images (%)")
    _coverage_legend(fig, colours, conditions)
    fig.suptitle(title)
    return fig


def accuracy_coverage(panels: dict[str, dict[str, dict]], path: Path, title: str, n_images: int | None = None) -> Path:
    """The accuracy/coverage figure (see the module docstring); a dot marks each rejector's own
    threshold; `n_images`, the MNIST images the curves are measured on, gives the bands."""
    return _save(_accuracy_coverage_figure(panels, title, n_images), path)


# --------------------------------------------------------------------------- similarity histograms

def _similarity_figure(entries: list[dict], title: str) -> Figure:
    models, conditions, panels = [], [], {}
    for e in entries:
        model, cond, ds = str(e["model"]), str(e["condition"]), str(e["dataset"])
        if model not in models:
            models.append(model)
        if cond not in conditions:
            conditions.append(cond)
        panel = panels.setdefault((model, cond), {})
        if ds in panel:
            raise ValueError(f"two entries for model {model!r}, condition {cond!r}, dataset {ds!r}")
        panel[ds] = e
    extra = [d for d in dict.fromkeys(str(e["dataset"]) for e in entries) if d not in _DATASET_COLOURS]
    colours = {**_DATASET_COLOURS, **{d: _EXTRA_COLOURS[i % len(_EXTRA_COLOURS)] for i, d in enumerate(extra)}}
    order = {d: i for i, d in enumerate(_DATASET_ORDER + extra)}

    nrows, ncols = max(1, len(models)), max(1, len(conditions))
    fig = Figure(figsize=(3.9 * ncols + 0.6, 3.5 * nrows + 0.6), layout="constrained")
    fig.suptitle(title)
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False)
    below = ScaledTranslation(0, -22 / 72, fig.dpi_scale_trans)  # legend just under the tick labels
    for i, model in enumerate(models):
        for j, cond in enumerate(conditions):
            ax = axes[i, j]
            panel = panels.get((model, cond))
            ax.set_title(f"{model}, {cond}", fontsize="medium")
            if panel is None:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
                ax.set_yticks([])
                continue
            handles, texts, thresholds = [], [], []
            for ds in sorted(panel, key=order.__getitem__):
                e = panel[ds]
                s = np.asarray(e["scores"], dtype=float).ravel()
                threshold = e.get("threshold")
                s_ok = s[~np.isnan(s)]
                if s_ok.size:
                    # clip: a Pearson similarity of 1 + 1e-7 from rounding belongs in the last bin
                    _, _, patches = ax.hist(np.clip(s_ok, -1, 1), bins=_BINS, weights=np.full(s_ok.size, 100 / s_ok.size),
                                            histtype="stepfilled", facecolor=to_rgba(colours[ds], 0.3),
                                            edgecolor=colours[ds], linewidth=1.3)
                    handles.append(patches[0])
                else:
                    handles.append(Line2D([], [], color=colours[ds]))
                texts.append(_legend_text(ds, s, threshold))
                if threshold is not None and not np.isnan(threshold) and threshold not in thresholds:
                    thresholds.append(float(threshold))
            for t in thresholds:
                handles.append(ax.axvline(t, color="black", ls="--", lw=1.3))
                texts.append(_threshold_text(t))
            ax.set_xlim(-1, 1)
            ax.grid(True, alpha=0.3)
            ax.legend(handles, texts, loc="upper center", bbox_to_anchor=(0.5, 0), fontsize="x-small",
                      bbox_transform=ax.transAxes + below)
        axes[i, 0].set_ylabel("share of samples (%)")
    fig.supxlabel("Pearson similarity between input and reconstruction (-1 to 1)")
    return fig


def similarity_histograms(entries: list[dict], path: Path, title: str) -> Path:
    """Histograms of the input-reconstruction Pearson similarity (paper Figures 8 and 13).

    Each entry: "model", "condition", "dataset" ("mnist", "fashion_mnist", "cifar10_bw"),
    "scores" (1-d array in [-1, 1]; NaN dropped) and "threshold". One row per model and one
    column per condition (order of first appearance); each panel overlays its datasets on 50
    shared bins over [-1, 1] (in % of each set), with the threshold as a dashed line and each
    set's accepted share (score >= threshold) in the legend.
    """
    return _save(_similarity_figure(entries, title), path)


# --------------------------------------------------------------------------- iterates

ITERATE_ROWS = 4  # rows of the iterates figure at most


def _iterate_rows(preds: np.ndarray) -> list[int]:
    """The rows (eps) shown: the first (the clean input), the last (the largest eps), and between
    them the rows whose predictions differ from the row before, evenly thinned to ITERATE_ROWS
    (with no change anywhere, the middle row)."""
    n = len(preds)
    if n <= 2:
        return list(range(n))
    inner = [r for r in range(1, n - 1) if list(preds[r]) != list(preds[r - 1])] or [n // 2]
    if len(inner) > ITERATE_ROWS - 2:
        inner = [inner[i] for i in sorted(set(np.linspace(0, len(inner) - 1, ITERATE_ROWS - 2).round().astype(int)))]
    return [0, *inner, n - 1]


def _iterate_panels(images: np.ndarray, r: int) -> list[tuple[str, np.ndarray, bool]]:
    """(title, image, signed) of row `r`'s panels: x_0, x_0 - clean, x_1 - x_0, x_K - x_0, x_K."""
    x = images[r]
    k = len(x) - 1
    panels = [("input x_0", x[0], False), ("x_0 − clean input", x[0] - images[0, 0], True)]
    if k >= 1:
        panels += [("x_1 − x_0 (first iteration)", x[1] - x[0], True), (f"x_{k} − x_0 (all {k})", x[k] - x[0], True),
                   (f"last iterate x_{k}", x[k], False)]
    return panels


def _iterates_figure(entry: dict, title: str) -> Figure:
    images = np.asarray(entry["images"], dtype=float)
    if images.ndim == 5 and images.shape[2] == 1:  # (n_eps, n_steps + 1, 1, H, W)
        images = images[:, :, 0]
    preds = np.asarray(entry["preds"])
    eps = [float(e) for e in entry["eps"]]
    label = int(entry["label"])
    if images.ndim != 4:
        raise ValueError(f"images must be (n_eps, n_steps + 1, H, W), got shape {images.shape}")
    if preds.shape != images.shape[:2] or len(eps) != images.shape[0]:
        raise ValueError(f"images {images.shape}, preds {preds.shape} and {len(eps)} eps do not match")
    rows = _iterate_rows(preds)
    ncols = len(_iterate_panels(images, 0))
    scale = {c: max(1e-6, max(float(np.abs(_iterate_panels(images, r)[c][1]).max()) for r in rows)) for c in range(ncols)}
    fig = Figure(figsize=(1.75 * ncols + 1.2, 1.75 * len(rows) + 1.6), layout="constrained")
    fig.suptitle(f"{title}\nmodel {entry['model']}, attack {entry['attack']}, true class {label}; "
                 "differences in red (brighter) and blue (darker)", fontsize="medium")
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for i, r in enumerate(rows):
        for c, (name, img, signed) in enumerate(_iterate_panels(images, r)):
            ax = axes[i, c]
            kw = {"cmap": "RdBu_r", "vmin": -scale[c], "vmax": scale[c]} if signed else {"cmap": "gray", "vmin": 0, "vmax": 1}
            im = ax.imshow(img, interpolation="nearest", **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize="x-small")
            if signed and i == len(rows) - 1:
                bar = fig.colorbar(im, ax=axes[:, c], location="bottom", shrink=0.9, aspect=12)
                bar.set_ticks([-scale[c], 0, scale[c]], labels=[f"{-scale[c]:.2g}", "0", f"{scale[c]:.2g}"], fontsize="x-small")
        _iterate_labels(axes[i], preds[r], label, eps[r])
    return fig


def _iterate_labels(row_axes, preds: np.ndarray, label: int, eps: float) -> None:
    """Row label (eps by `tables.fmt_eps`) and the predictions under the input and the last iterate."""
    first, last = int(preds[0]), int(preds[-1])
    row_axes[0].set_ylabel(f"eps {fmt_eps(eps)}", fontsize="small")
    row_axes[0].set_xlabel(f"pred {first}", color="black" if first == label else "red", fontsize="small", labelpad=2)
    if len(row_axes) > 2:
        along = " ".join(str(int(p)) for p in preds)
        row_axes[-1].set_xlabel(f"pred {last}\nalong x_0..: {along}", color="black" if last == label else "red",
                                fontsize="x-small", labelpad=2)


def iterates(entry: dict, path: Path, title: str) -> Path:
    """One input attacked at a few eps (rows, see `_iterate_rows`) and what the attractor network's
    iterates x_k = G^k(x_0) change: per row the input x_0, x_0 - clean input, x_1 - x_0, x_K - x_0
    and x_K, with the classes predicted (red where wrong); the paper's Figures 11 and 12."""
    return _save(_iterates_figure(entry, title), path)
