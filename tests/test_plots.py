"""attractor_bench.plots: PNG files that are written, readable, deterministic, and plot the right numbers."""

import math

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
import pytest

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
    assert len(lines) == 3  # fgsm, pgd, worst case; the ignored rows draw nothing
    wc = max(lines, key=lambda ln: ln.get_linewidth())  # the thick black worst-case line
    assert wc.get_color() == "black"
    np.testing.assert_allclose(wc.get_xdata(), [0, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(wc.get_ydata(), [99, 52, 22, 2])
    # the same attack has the same colour in every panel
    colour = {tuple(matplotlib.colors.to_rgba(ln.get_color())) for ax in axes for ln in ax.get_lines()
              if ln.get_linewidth() < wc.get_linewidth() and ln.get_ydata()[1] == pytest.approx(60)}
    assert len(colour) == 1
    assert axes[0].get_ylim()[0] <= 0 and axes[0].get_ylim()[1] >= 100
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_texts[:2] == ["fgsm (network, gradient)", "pgd (pipeline, gradient)"]
    assert "worst case" in legend_texts[-1]


def test_worst_case_vs_eps_png(tmp_path):
    series = {"baseline": [(0.2, 0.01), (0.0, 0.99), (0.1, 0.3)], "attractor": [(0.0, 0.98), (0.1, 0.8), (0.2, float("nan"))]}
    p = plots.worst_case_vs_eps(series, tmp_path / "wc.png", "leaderboard")
    first = _check_png(p)
    assert plots.worst_case_vs_eps(series, tmp_path / "wc.png", "leaderboard").read_bytes() == first
    fig = plots._worst_case_figure(series, "leaderboard", "worst-case robust accuracy (%)")
    ax = fig.axes[0]
    base, attr = ax.get_lines()
    np.testing.assert_allclose(base.get_xdata(), [0, 0.1, 0.2])  # sorted
    np.testing.assert_allclose(base.get_ydata(), [99, 30, 1])  # in percent
    np.testing.assert_allclose(attr.get_ydata(), [98, 80])  # NaN point dropped
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["baseline", "attractor"]


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


def test_iterates_figure_labels():
    entry = _iterates_entry()
    fig = plots._iterates_figure(entry, "iterates")
    axes = np.array(fig.axes).reshape(3, 5)
    assert [ax.get_title() for ax in axes[0]] == ["input", "iterate 1", "iterate 2", "iterate 3", "iterate 4"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["eps 0 (clean)", "eps 0.10", "eps 0.20"]
    red = [[matplotlib.colors.same_color(ax.xaxis.label.get_color(), "red") for ax in row] for row in axes]
    assert red == [[False] * 5, [False, True, False, False, False], [True] * 5]
    assert axes[1, 1].get_xlabel() == "pred 3"
    im = axes[0, 0].get_images()[0]
    assert im.get_clim() == (0, 1)
    np.testing.assert_array_equal(im.get_array(), entry["images"][0, 0])
    with pytest.raises(ValueError):
        plots._iterates_figure({**entry, "preds": entry["preds"][:, :3]}, "bad")


def test_import_leaves_backend_alone():
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import attractor_bench.plots; "
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()")
    subprocess.run([sys.executable, "-c", code], check=True)
