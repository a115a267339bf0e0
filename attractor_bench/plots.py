"""The benchmark's figures, drawn with matplotlib and written as PNG files.

- `accuracy_vs_eps`: accuracy on MNIST (%) against the perturbation budget eps, one panel per
  model, one line per attack of one norm (colour per attack label, line style per target,
  marker per kind), each starting at the clean accuracy at eps 0, and the per-sample worst case
  over those attacks as a thick black line. The paper reports these numbers at a single eps
  (20/255, its Tables 1-2); the curve shows how they change with the budget.
- `worst_case_vs_eps`: the leaderboard figure, worst-case robust accuracy (%) against eps, one
  line per model.
- `similarity_histograms`: the paper's Figures 8 and 13, the distribution of the Pearson
  similarity between an input and its reconstruction for in-distribution (MNIST) and
  out-of-distribution (Fashion-MNIST, CIFAR-10-bw) samples, clean or attacked, with the
  rejection threshold and the share of each set that the rejector accepts (similarity >=
  threshold). One row per model, one column per condition.
- `accuracy_coverage`: a rejector's accuracy/coverage curve (selective classification): as the
  threshold moves, the accuracy on the accepted MNIST images against the share accepted, one panel
  per model, one colour per rejector, solid clean and dashed under attack, the rejector's own
  threshold marked.
- `iterates`: the paper's Figures 11 and 12, one input attacked at growing eps (rows) and its
  iterates x_k = G^k(x_0) through the attractor network (columns), with the class predicted
  from every iterate (red where it is wrong).

Every function draws on its own `matplotlib.figure.Figure` with the Agg canvas (pyplot is not
used, so importing this module leaves the user's backend alone), saves at a fixed dpi without
the "Software" metadata (the same inputs give byte-identical files), writes to a temporary file
in the target's folder and moves it onto the target with `os.replace`, and returns the Path.
Eps is in pixel units of images scaled to [0, 1]; accuracies and shares are drawn in percent.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import ScaledTranslation

from .data import DISPLAY_NAMES
from .files import atomic_write

__all__ = ["accuracy_vs_eps", "worst_case_vs_eps", "accuracy_coverage", "similarity_histograms", "iterates", "accepted_share", "DPI"]

DPI = 110
NORMS = {"linf": "L∞", "l2": "L2"}
_DATASET_ORDER = ["mnist", "fashion_mnist", "cifar10_bw"]
_DATASET_COLOURS = {"mnist": "tab:blue", "fashion_mnist": "tab:orange", "cifar10_bw": "tab:green"}
_EXTRA_COLOURS = ["tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"]
_MARKERS = {"gradient": "o", "score": "s", "decision": "^"}
_LINESTYLES = {"network": "-", "pipeline": "--", "bpda": "-.", "transfer": ":"}
_TABLE_COLUMNS = ("model", "attack", "eps", "dataset", "metric", "value")
_BINS = np.linspace(-1.0, 1.0, 51)


# --------------------------------------------------------------------------- helpers

def _save(fig: Figure, path: Path) -> Path:
    """Write `fig` as PNG onto `path` atomically (`files.atomic_write`), deterministically (fixed
    dpi, no "Software" metadata)."""
    FigureCanvasAgg(fig)  # the Agg canvas, whatever the user's default backend is
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None}))


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {sorted(NORMS)}, got {norm!r}")


def _eps_label(norm: str | None) -> str:
    if norm is None:
        return "eps (pixel units, images in [0, 1])"
    return f"eps ({NORMS[norm]} norm, pixel units, images in [0, 1])"


def _colours(labels) -> dict[str, tuple]:
    """One colour per label, assigned in sorted label order from a qualitative colormap
    (tab10 up to 10 labels, tab20 beyond, cycling past 20)."""
    labels = sorted(set(labels))
    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


def _finite_points(points) -> list[tuple[float, float]]:
    pts = [(float(e), float(a)) for e, a in points]
    return sorted((e, a) for e, a in pts if math.isfinite(e) and math.isfinite(a))


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = max(1, min(n, max_cols))
    return math.ceil(max(n, 1) / cols), cols


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


def _accuracy_figure(table: pd.DataFrame, attacks: dict[str, dict], title: str, norm: str = "linf") -> Figure:
    series = _series(table, attacks, norm)
    wc = f"worst_case_{norm}"
    colours = _colours(lab for lab, spec in attacks.items() if spec["norm"] == norm)
    nrows, ncols = _grid(len(series))
    n_entries = len(colours) + 1
    legend_cols = min(n_entries, 4)
    legend_h = 0.25 * math.ceil(n_entries / legend_cols)
    fig = Figure(figsize=(max(6.0, 4.2 * ncols), 3.2 * nrows + legend_h + 1.0), layout="constrained")
    fig.suptitle(title)
    if not series:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, f"no {NORMS[norm]} attack results", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    handles: dict[str, Line2D] = {}
    for ax, (model, lines) in zip(axes, series.items()):
        for label, points in lines.items():
            xs, ys = zip(*points)
            ys = [100 * y for y in ys]
            if label == wc:
                (h,) = ax.plot(xs, ys, color="black", lw=3, marker="o", ms=5, zorder=3)
                handles.setdefault(label, h)
                continue
            spec = attacks[label]
            (h,) = ax.plot(xs, ys, color=colours[label], lw=1.5, ms=5, marker=_MARKERS.get(spec.get("kind"), "D"),
                           ls=_LINESTYLES.get(spec.get("target"), "-"), zorder=2)
            handles.setdefault(label, h)
        ax.set_title(model)
        ax.set_xlim(left=0)
        ax.set_ylim(-2, 102)
        ax.set_yticks(range(0, 101, 20))
        ax.grid(True, alpha=0.3)
    for ax in axes[len(series):]:
        ax.set_visible(False)
    for i, ax in enumerate(axes[:len(series)]):
        if i + ncols >= len(series):  # no visible panel below: the x label goes here (a figure-level
            ax.set_xlabel(_eps_label(norm))  # one would collide with the legend under the panels)
    fig.supylabel("accuracy on MNIST (%)")
    order = [lab for lab in sorted(colours) if lab in handles] + ([wc] if wc in handles else [])
    texts = [f"worst case per sample over the {NORMS[norm]} attacks" if lab == wc
             else f"{lab} ({attacks[lab].get('target', '?')}, {attacks[lab].get('kind', '?')})" for lab in order]
    fig.legend([handles[lab] for lab in order], texts, loc="outside lower center", ncols=legend_cols, fontsize="small")
    return fig


def accuracy_vs_eps(table: pd.DataFrame, attacks: dict[str, dict], path: Path, title: str, norm: str = "linf") -> Path:
    """Accuracy on MNIST (%) against eps per model, for the attacks of one `norm` and their worst case.

    `table` is a run's tidy result table (model, attack, eps, dataset, metric, value); `attacks`
    maps each attack label to a dict with at least "norm", "kind" and "target". See `_series` for
    the rows used. Writes a PNG to `path` and returns it.
    """
    return _save(_accuracy_figure(table, attacks, title, norm), path)


# --------------------------------------------------------------------------- leaderboard

def _worst_case_figure(series: dict[str, list[tuple[float, float]]], title: str, ylabel: str) -> Figure:
    colours = _colours(series)
    fig = Figure(figsize=(8.0, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for model, points in series.items():
        pts = _finite_points(points)
        if not pts:
            continue
        xs, ys = zip(*pts)
        ax.plot(xs, [100 * y for y in ys], marker="o", ms=5, lw=1.8, color=colours[model], label=model)
    ax.set_title(title)
    ax.set_xlabel(_eps_label(None))
    ax.set_ylabel(ylabel)
    ax.set_xlim(left=0)
    ax.set_ylim(-2, 102)
    ax.set_yticks(range(0, 101, 20))
    ax.grid(True, alpha=0.3)
    if ax.get_lines():
        fig.legend(loc="outside right upper", fontsize="small", title="model")
    return fig


def worst_case_vs_eps(series: dict[str, list[tuple[float, float]]], path: Path, title: str,
                      ylabel: str = "worst-case robust accuracy (%)") -> Path:
    """One line per model: points (eps, accuracy in [0, 1]) drawn in percent; legend on the right."""
    return _save(_worst_case_figure(series, title, ylabel), path)


# --------------------------------------------------------------------------- accuracy / coverage

_CONDITION_STYLES = ["-", "--", ":", "-."]


def _accuracy_coverage_figure(panels: dict[str, dict[str, dict]], title: str) -> Figure:
    """panels: model -> rejector -> {"threshold": T, "curves": {condition: (coverage, accuracy, accepted share at T)}}."""
    rows, cols = _grid(len(panels))
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows + 0.6), layout="constrained")
    colours = _colours({r for p in panels.values() for r in p})
    for i, (model, rejectors) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        for r, entry in rejectors.items():
            for j, (cond, (cov, acc, at_t)) in enumerate(entry["curves"].items()):
                style = _CONDITION_STYLES[j % len(_CONDITION_STYLES)]
                ax.plot(100 * np.asarray(cov), 100 * np.asarray(acc), ls=style, lw=1.4, color=colours[r],
                        label=f"{r}, {cond}")
                if at_t is not None and 0 < at_t[0] <= 1:
                    ax.plot([100 * at_t[0]], [100 * at_t[1]], marker="o", ms=4, color=colours[r])
        ax.set_title(model, fontsize="medium")
        ax.set_xlabel("MNIST images accepted (%)")
        ax.set_ylabel("accuracy on the accepted (%)")
        ax.set_xlim(0, 100)
        ax.set_ylim(-2, 102)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", loc="lower left")
    fig.suptitle(title)
    return fig


def accuracy_coverage(panels: dict[str, dict[str, dict]], path: Path, title: str) -> Path:
    """The accuracy/coverage figure (see the module docstring); a dot marks each rejector's own threshold."""
    return _save(_accuracy_coverage_figure(panels, title), path)


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
    nrows, ncols = images.shape[:2]
    fig = Figure(figsize=(1.15 * ncols + 0.9, 1.35 * nrows + 1.0), layout="constrained")
    fig.suptitle(f"{title}\nmodel {entry['model']}, attack {entry['attack']}, true class {label}", fontsize="medium")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for r in range(nrows):
        for k in range(ncols):
            ax = axes[r, k]
            ax.imshow(images[r, k], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            p = int(preds[r, k])
            ax.set_xlabel(f"pred {p}", color="black" if p == label else "red", fontsize="small", labelpad=2)
            if r == 0:
                ax.set_title("input" if k == 0 else f"iterate {k}", fontsize="small")
        ax0 = axes[r, 0]
        ax0.set_ylabel("eps 0 (clean)" if eps[r] == 0 else f"eps {eps[r]:.2f}", fontsize="small")
    return fig


def iterates(entry: dict, path: Path, title: str) -> Path:
    """One input attacked at growing eps (rows) and its iterates through the attractor network
    (columns: input x_0, then x_k = G^k(x_0)), with the class predicted from each iterate under
    it, in red where it differs from the true label (paper Figures 11 and 12)."""
    return _save(_iterates_figure(entry, title), path)
