"""attractor_bench.plots: PNG files that are written, readable, deterministic, and plot the right numbers."""

import math

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from attractor_bench import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

ATTACKS = {
    "fgsm": {"norm": "linf", "kind": "gradient", "target": "network"},
    "pgd": {"norm": "linf", "kind": "gradient", "target": "pipeline"},
    "square": {"norm": "linf", "kind": "score", "target": "pipeline"},
    "hsj": {"norm": "l2", "kind": "decision", "target": "pipeline"},
}


def _row(model, attack, eps, value, dataset="mnist", metric="accuracy"):
    return dict(model=model, attack=attack, eps=eps, dataset=dataset, metric=metric, value=value)


@pytest.fixture
def table() -> pd.DataFrame:
    rows = []
    for model, clean in (("baseline", 0.99), ("attractor", 0.98)):
        rows.append(_row(model, "none", 0.0, clean))
        # eps deliberately out of order: the series must come out sorted
        for eps, acc in ((0.3, 0.10), (0.1, 0.60), (0.2, 0.30)):
            rows.append(_row(model, "fgsm", eps, acc))
            rows.append(_row(model, "pgd", eps, acc - 0.05))
            rows.append(_row(model, "worst_case_linf", eps, acc - 0.08))
            rows.append(_row(model, "worst_case_linf_all_images", eps, 0.0))  # must be ignored
            rows.append(_row(model, "unknown_attack", eps, 0.5))  # not in ATTACKS: ignored
            rows.append(_row(model, "fgsm", eps, 0.0, metric="end_to_end_accuracy"))  # other metric: ignored
            rows.append(_row(model, "fgsm", eps, 0.0, dataset="fashion_mnist"))  # other dataset: ignored
        rows.append(_row(model, "hsj", 1.5, 0.4))
        rows.append(_row(model, "worst_case_l2", 1.5, 0.35))
        rows.append(_row(model, "sanity", 0.0, 1.0, metric="potentially_unreliable"))
        rows.append(_row(model, "sanity", 0.0, 0.0))
    return pd.DataFrame(rows)


def _entries():
    rng = np.random.default_rng(0)
    out = []
    for model in ("baseline", "attractor"):
        for cond in ("clean", "fgsm, eps 0.1"):
            out.append(dict(model=model, condition=cond, dataset="mnist",
                            scores=np.clip(rng.normal(0.9, 0.05, 200), -1, 1), threshold=0.8))
            out.append(dict(model=model, condition=cond, dataset="fashion_mnist",
                            scores=np.r_[np.clip(rng.normal(0.4, 0.2, 200), -1, 1), np.nan], threshold=0.8))
    return out


def _iterates_entry():
    rng = np.random.default_rng(1)
    return dict(model="attractor", attack="pgd", eps=[0.0, 0.1, 0.2], images=rng.random((3, 5, 28, 28)),
                preds=np.array([[7, 7, 7, 7, 7], [7, 3, 7, 7, 7], [3, 3, 3, 3, 3]]), label=7)


def _close(points, expected):
    """Points [(eps, acc), ...] equal to `expected` up to rounding, in the same order."""
    assert len(points) == len(expected), points
    np.testing.assert_allclose(np.array(points, dtype=float), np.array(expected, dtype=float), rtol=0, atol=1e-12)


def _check_png(path, min_w=300, min_h=200):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    img = matplotlib.image.imread(path)
    h, w = img.shape[:2]
    assert min_w <= w <= 5000 and min_h <= h <= 5000, (w, h)
    assert img.std() > 0  # something is drawn, not a blank canvas
    assert not list(path.parent.glob(".*.tmp"))  # the temporary file was moved, not left behind
    return data


# ----------------------------------------------------------------------- series and helpers

def test_series_content(table):
    s = plots._series(table, ATTACKS, "linf")
    assert list(s) == ["baseline", "attractor"]
    for model, clean in (("baseline", 0.99), ("attractor", 0.98)):
        lines = s[model]
        # only attacks of the norm that are in ATTACKS (square has no rows), plus the worst case
        assert list(lines) == ["fgsm", "pgd", "worst_case_linf"]
        _close(lines["fgsm"], [(0.0, clean), (0.1, 0.60), (0.2, 0.30), (0.3, 0.10)])
        _close(lines["pgd"], [(0.0, clean), (0.1, 0.55), (0.2, 0.25), (0.3, 0.05)])
        _close(lines["worst_case_linf"], [(0.0, clean), (0.1, 0.52), (0.2, 0.22), (0.3, 0.02)])
        for points in lines.values():
            assert points[0][0] == 0.0
            eps = [e for e, _ in points]
            assert eps == sorted(eps) and len(set(eps)) == len(eps)


def test_series_other_norm(table):
    s = plots._series(table, ATTACKS, "l2")
    assert list(s["baseline"]) == ["hsj", "worst_case_l2"]
    _close(s["baseline"]["hsj"], [(0.0, 0.99), (1.5, 0.4)])
    _close(s["baseline"]["worst_case_l2"], [(0.0, 0.99), (1.5, 0.35)])
    with pytest.raises(ValueError):
        plots._series(table, ATTACKS, "l1")


def test_series_without_clean_row(table):
    s = plots._series(table[table.attack != "none"], ATTACKS, "linf")
    _close(s["baseline"]["fgsm"], [(0.1, 0.60), (0.2, 0.30), (0.3, 0.10)])


def test_accepted_share_by_hand():
    scores = np.array([0.95, 0.8, 0.79, np.nan, -0.2, 1.0, np.nan, 0.81])
    # non-NaN: 0.95 0.8 0.79 -0.2 1.0 0.81 -> accepted (>= 0.8): 0.95 0.8 1.0 0.81 = 4 of 6
    assert plots.accepted_share(scores, 0.8) == pytest.approx(4 / 6)
    assert plots.accepted_share(scores, 1.0) == pytest.approx(1 / 6)
    assert plots.accepted_share(scores, -1.0) == pytest.approx(1.0)
    assert math.isnan(plots.accepted_share([np.nan, np.nan], 0.5))


def test_legend_text():
    scores = np.array([0.9, 0.85, 0.7, np.nan])
    assert plots._legend_text("mnist", scores, 0.8) == "MNIST (66.7% accepted, n=3, 1 NaN dropped)"
    assert plots._legend_text("cifar10_bw", [0.1, 0.9], 0.8) == "CIFAR-10-bw (50.0% accepted, n=2)"
    assert plots._threshold_text(0.8) == "threshold 0.80"


def test_colours_follow_sorted_labels():
    a = plots._colours(["pgd", "fgsm", "square"])
    b = plots._colours(["square", "pgd", "fgsm"])
    assert a == b
    assert len(set(a.values())) == 3
    many = plots._colours([f"a{i:02d}" for i in range(20)])
    assert len(set(many.values())) == 20


# ----------------------------------------------------------------------- figures

def test_accuracy_vs_eps_png(table, tmp_path):
    p = plots.accuracy_vs_eps(table, ATTACKS, tmp_path / "acc.png", "accuracy vs eps")
    assert p == tmp_path / "acc.png"
    first = _check_png(p)
    again = plots.accuracy_vs_eps(table, ATTACKS, tmp_path / "acc2.png", "accuracy vs eps")
    assert again.read_bytes() == first
    # overwriting the target in place gives the same bytes as well
    plots.accuracy_vs_eps(table, ATTACKS, p, "accuracy vs eps")
    assert p.read_bytes() == first
    l2 = plots.accuracy_vs_eps(table, ATTACKS, tmp_path / "acc_l2.png", "accuracy vs eps", norm="l2")
    assert l2.read_bytes() != first


def test_accuracy_figure_draws_the_series_in_percent(table):
    fig = plots._accuracy_figure(table, ATTACKS, "t", "linf")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["baseline", "attractor"]
    lines = axes[0].get_lines()
    assert len(lines) == 4  # the clean point, fgsm, pgd, worst case; the ignored rows draw nothing
    clean = [ln for ln in lines if ln.get_linestyle() == "None"]
    assert len(clean) == 1 and list(clean[0].get_xdata()) == [0] and list(clean[0].get_ydata()) == [99]
    wc = max(lines, key=lambda ln: ln.get_linewidth())  # the thick black worst-case line
    assert wc.get_color() == "black"
    np.testing.assert_allclose(wc.get_xdata(), [0.1, 0.2, 0.3])  # the clean point is not joined to it
    np.testing.assert_allclose(wc.get_ydata(), [52, 22, 2])
    # the same attack has the same colour in every panel
    colour = {tuple(matplotlib.colors.to_rgba(ln.get_color())) for ax in axes for ln in ax.get_lines()
              if ln.get_linewidth() < wc.get_linewidth() and len(ln.get_ydata()) > 1 and ln.get_ydata()[0] == pytest.approx(60)}
    assert len(colour) == 1
    assert axes[0].get_ylim()[0] <= 0 and axes[0].get_ylim()[1] >= 100
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_texts[:3] == ["clean accuracy (eps 0)", "fgsm (network, gradient)", "pgd (pipeline, gradient)"]
    assert "worst case" in legend_texts[-1]


def _segments(ax):
    """(x0, x1) of every drawn line segment of the axes."""
    return [(a, b) for ln in ax.get_lines() for a, b in zip(ln.get_xdata()[:-1], ln.get_xdata()[1:])]


def test_no_line_crosses_an_eps_that_was_not_measured():
    rows = [_row("m", "none", 0.0, 0.99)]
    for eps, acc in ((0.1, 0.8), (0.2, 0.6), (0.3, 0.4), (0.5, 0.1)):
        rows += [_row("m", "pgd", eps, acc), _row("m", "worst_case_linf", eps, acc)]
    rows += [_row("m", "fgsm", e, 0.9) for e in (0.1, 0.3)]  # fgsm skipped 0.2: no line from 0.1 to 0.3
    fig = plots._accuracy_figure(pd.DataFrame(rows), ATTACKS, "t", "linf", n_clean=1000)
    ax = fig.axes[0]
    measured = {0.0, 0.1, 0.2, 0.3, 0.5}
    segments = _segments(ax)
    assert segments and all(not any(a < e < b for e in measured) for a, b in segments)
    assert all(a > 0 for a, _ in segments)  # nothing joins the clean point at eps 0
    fgsm = [ln for ln in ax.get_lines() if list(ln.get_ydata()) == [90]]
    assert len(fgsm) == 2  # two lone points, not a line
    # the x ticks are the measured eps, written by fmt_eps
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.1", "0.2", "0.3", "0.5"]
    assert plots._runs([0.0, 0.1, 0.3, 0.5], [0.1, 0.2, 0.3, 0.5]) == [[0], [1], [2, 3]]


def test_interval_bands_are_the_clopper_pearson_intervals():
    from attractor_bench.summary import interval

    rows = [_row("m", "none", 0.0, 0.99)]
    for eps, acc in ((0.1, 0.5), (0.2, 0.3)):
        rows += [_row("m", "pgd", eps, acc), _row("m", "worst_case_linf", eps, acc),
                 _row("m", "pgd", eps, 100, metric="n_samples")]  # pgd on a subset of 100 images
    fig = plots._accuracy_figure(pd.DataFrame(rows), ATTACKS, "t", "linf", n_clean=1000)
    ax = fig.axes[0]
    bands = [c for c in ax.collections if "Poly" in type(c).__name__]
    assert len(bands) == 2  # pgd and the worst case
    spans = sorted(float(np.ptp(b.get_paths()[0].vertices[:, 1])) for b in bands)
    lo100, hi100 = interval(0.5, 100)
    lo1000, hi1000 = interval(0.5, 1000)
    # the band's height at eps 0.1 is the interval's width; 100 images give a wider band than 1000
    assert spans[0] >= 100 * (hi1000 - lo1000) - 1e-9 and spans[1] >= 100 * (hi100 - lo100) - 1e-9
    assert spans[1] > spans[0]
    # without n (no n_samples rows, no n_clean), no band is drawn
    plain = pd.DataFrame([r for r in rows if r["metric"] != "n_samples"])
    assert not [c for c in plots._accuracy_figure(plain, ATTACKS, "t", "linf").axes[0].collections if "Poly" in type(c).__name__]


def test_twelve_series_differ_in_colour_line_style_and_marker():
    names = ["attractor_at", "attractor_at_01", "attractor_at_01_long", "attractor", "attractor_full", "baseline",
             "mlp", "pgd_at", "cnn_at", "stochastic", "feature_dae", "apudae"]
    styles = plots._styles(names)
    colours = [matplotlib.colors.to_rgb(s["color"]) for s in styles.values()]
    gaps = [np.linalg.norm(np.subtract(a, b)) for i, a in enumerate(colours) for b in colours[i + 1:]]
    assert min(gaps) > 0.2  # twelve colours that stay apart (tab10 repeats past ten, tab20 pairs are near twins)
    assert all(not matplotlib.colors.same_color(s["color"], "black") for s in styles.values())  # black is the worst case's
    a, b = styles["attractor_at_01"], styles["attractor_at_01_long"]
    assert a["ls"] != b["ls"] and a["marker"] != b["marker"]
    ordered = [styles[n] for n in sorted(names)]
    assert all(x["ls"] != y["ls"] and x["marker"] != y["marker"] for x, y in zip(ordered, ordered[1:]))


def test_every_figure_writes_an_svg_beside_its_png(table, tmp_path):
    written = [plots.accuracy_vs_eps(table, ATTACKS, tmp_path / "acc.png", "t", n_clean=1000),
               plots.worst_case_vs_eps({"a": [(0.1, 0.5, 100)]}, tmp_path / "wc.png", "t"),
               plots.similarity_histograms(_entries(), tmp_path / "sim.png", "t"),
               plots.iterates(_iterates_entry(), tmp_path / "it.png", "t"),
               plots.accuracy_coverage({"m": {"r": {"curves": {"clean": ([0.5, 1.0], [1.0, 0.9], [1.0, 0.9])}}}},
                                       tmp_path / "cov.png", "t", n_images=10)]
    for png in written:
        svg = png.with_suffix(".svg")
        assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
        assert "<dc:date>" not in svg.read_text()  # no time stamp: the same inputs give the same bytes
    first = (tmp_path / "acc.svg").read_bytes()
    plots.accuracy_vs_eps(table, ATTACKS, tmp_path / "acc.png", "t", n_clean=1000)
    assert (tmp_path / "acc.svg").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([p.name for p in written] + [p.with_suffix(".svg").name for p in written])
    w = matplotlib.image.imread(tmp_path / "wc.png").shape[1]
    assert w == 8 * plots.DPI and plots.DPI >= 200  # print resolution


def test_legends_sit_outside_the_panels():
    panels = {m: {r: {"curves": {"PGD eps 0.1": ([0.5, 1.0], [0.2, 0.1], [1.0, 0.1]), "clean": ([0.5, 1.0], [1.0, 0.9], [1.0, 0.9])}}
                  for r in ("msp", "energy")} for m in ("a", "b")}
    fig = plots._accuracy_coverage_figure(panels, "t", n_images=10)
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    FigureCanvasAgg(fig).draw()
    legend = fig.legends[0].get_window_extent()
    assert all(not legend.overlaps(ax.get_window_extent()) for ax in fig.axes)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts.index("clean") < texts.index("PGD eps 0.1")  # clean first (solid), whatever order ood.json keeps
    solid = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "-"]
    assert solid and all(list(ln.get_ydata()) == [100, 90] for ln in solid)


def test_worst_case_vs_eps_png(tmp_path):
    series = {"baseline": [(0.2, 0.01), (0.0, 0.99), (0.1, 0.3)], "attractor": [(0.0, 0.98), (0.1, 0.8), (0.2, float("nan"))]}
    p = plots.worst_case_vs_eps(series, tmp_path / "wc.png", "leaderboard")
    first = _check_png(p)
    assert plots.worst_case_vs_eps(series, tmp_path / "wc.png", "leaderboard").read_bytes() == first
    fig = plots._worst_case_figure(series, "leaderboard", "worst-case robust accuracy (%)")
    ax = fig.axes[0]
    base_clean, base, attr_clean, attr = ax.get_lines()  # the clean point is never joined to the attacked ones
    np.testing.assert_allclose(base_clean.get_xdata(), [0])
    np.testing.assert_allclose(base.get_xdata(), [0.1, 0.2])  # sorted
    np.testing.assert_allclose(base.get_ydata(), [30, 1])  # in percent
    np.testing.assert_allclose(attr.get_ydata(), [80])  # NaN point dropped
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["baseline", "attractor"]
    assert not ax.collections  # no n: no bands
    with_n = plots._worst_case_figure({"a": [(0.1, 0.5, 1000), (0.2, 0.3, 1000)]}, "t", "y").axes[0]
    assert len(with_n.collections) == 1  # the 95% band


def test_similarity_histograms_png(tmp_path):
    entries = _entries()
    p = plots.similarity_histograms(entries, tmp_path / "sim.png", "similarity")
    first = _check_png(p)
    assert plots.similarity_histograms(entries, tmp_path / "sim2.png", "similarity").read_bytes() == first


def test_similarity_figure_threshold_and_shares():
    entries = [
        dict(model="m", condition="clean", dataset="mnist", scores=np.array([0.9, 0.85, 0.7, np.nan]), threshold=0.8),
        dict(model="m", condition="clean", dataset="fashion_mnist", scores=np.array([0.1, 0.2, 0.81, 0.3]), threshold=0.8),
        dict(model="m", condition="fgsm, eps 0.1", dataset="cifar10_bw", scores=np.array([np.nan, 0.5]), threshold=0.6),
        dict(model="n", condition="clean", dataset="mnist", scores=np.array([1.0, 1.0]), threshold=0.8),
    ]
    fig = plots._similarity_figure(entries, "t")
    axes = fig.axes
    assert len(axes) == 4  # 2 models x 2 conditions
    assert [ax.get_title() for ax in axes] == ["m, clean", "m, fgsm, eps 0.1", "n, clean", "n, fgsm, eps 0.1"]
    texts = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert texts == ["MNIST (66.7% accepted, n=3, 1 NaN dropped)", "Fashion-MNIST (25.0% accepted, n=4)", "threshold 0.80"]
    vlines = [ln for ln in axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert len(vlines) == 1 and list(vlines[0].get_xdata()) == [0.8, 0.8]
    texts = [t.get_text() for t in axes[1].get_legend().get_texts()]
    assert texts == ["CIFAR-10-bw (0.0% accepted, n=1, 1 NaN dropped)", "threshold 0.60"]
    assert axes[3].get_legend() is None  # no data for (n, fgsm): a placeholder, no crash
    # shares of samples per bin, in percent: the histogram of MNIST in panel 0 sums to 100
    heights = axes[0].patches[0].get_xy()[:, 1]
    assert heights.max() == pytest.approx(100 / 3)


def test_similarity_all_nan_does_not_crash(tmp_path):
    entries = [dict(model="m", condition="clean", dataset="mnist", scores=np.array([np.nan, np.nan]), threshold=0.8)]
    _check_png(plots.similarity_histograms(entries, tmp_path / "nan.png", "t"), min_w=100, min_h=100)


def test_iterates_png(tmp_path):
    entry = _iterates_entry()
    p = plots.iterates(entry, tmp_path / "it.png", "iterates")
    first = _check_png(p)
    assert plots.iterates(entry, tmp_path / "it2.png", "iterates").read_bytes() == first


def test_iterates_figure_shows_the_changes():
    entry = _iterates_entry()
    fig = plots._iterates_figure(entry, "iterates")
    axes = np.array([ax for ax in fig.axes if ax.get_images()]).reshape(3, 5)
    assert [ax.get_title() for ax in axes[0]] == ["input x_0", "x_0 − clean input", "x_1 − x_0 (first iteration)",
                                                  "x_4 − x_0 (all 4)", "last iterate x_4"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["eps 0 (clean)", "eps 0.1", "eps 0.2"]
    images = entry["images"]
    np.testing.assert_allclose(axes[1, 1].get_images()[0].get_array(), images[1, 0] - images[0, 0])
    np.testing.assert_allclose(axes[2, 2].get_images()[0].get_array(), images[2, 1] - images[2, 0])
    np.testing.assert_allclose(axes[2, 3].get_images()[0].get_array(), images[2, 4] - images[2, 0])
    np.testing.assert_array_equal(axes[0, 0].get_images()[0].get_array(), images[0, 0])
    assert axes[0, 0].get_images()[0].get_clim() == (0, 1)
    lo, hi = axes[1, 1].get_images()[0].get_clim()
    assert lo == -hi > -1  # differences: a symmetric scale of their own
    red = [matplotlib.colors.same_color(ax.xaxis.label.get_color(), "red") for ax in axes[:, 0]]
    assert red == [False, False, True]
    assert axes[1, 4].get_xlabel() == "pred 7\nalong x_0..: 7 3 7 7 7"
    with pytest.raises(ValueError):
        plots._iterates_figure({**entry, "preds": entry["preds"][:, :3]}, "bad")


def test_iterates_figure_has_few_rows_and_no_duplicate_labels():
    # mnist_fgsm's grid: 0, 1/255 ... 10/255, 20/255 (twelve rows, labelled 0.00 0.00 0.01 0.01 ... before)
    eps = [0.0] + [k / 255 for k in range(1, 11)] + [20 / 255]
    preds = np.array([[1] * 3] * 8 + [[7, 1, 1]] * 3 + [[7, 7, 7]])
    entry = dict(model="m", attack="fgsm", eps=eps, images=np.random.default_rng(0).random((12, 3, 28, 28)), preds=preds, label=1)
    fig = plots._iterates_figure(entry, "t")
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert len(labels) <= plots.ITERATE_ROWS and len(set(labels)) == len(labels)
    assert labels == ["eps 0 (clean)", "eps 8/255", "eps 20/255"]  # clean, where predictions change, the largest


def test_import_leaves_backend_alone():
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import attractor_bench.plots; "
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()")
    subprocess.run([sys.executable, "-c", code], check=True)
