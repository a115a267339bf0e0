"""suites/leaderboard_smoke.yaml (the leaderboard suite in miniature, slow tests) end to end: every model kind
through the same attacks, the figures, the leaderboard, and the same bytes when the cells are
recomputed (the randomized model included)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from attractor_bench import leaderboard
from attractor_bench.cli import app
from attractor_bench.config import load_suite

from conftest import REPO, run_args

SUITE = REPO / "suites" / "leaderboard_smoke.yaml"
MODELS = ["attractor", "mlp", "pgd_at", "stochastic", "apudae", "feature_dae"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_root):
    tmp = tmp_path_factory.mktemp("leaderboard")
    result = CliRunner().invoke(app, run_args(SUITE, data_root, tmp / "cache", tmp / "results"))
    assert result.exit_code == 0, result.output
    folder = tmp / "results" / "leaderboard_smoke"
    return tmp, folder, pd.read_csv(folder / "results.csv"), json.loads((folder / "run.json").read_text())


def test_the_full_leaderboard_suite_is_valid_and_has_every_model_kind():
    suite = load_suite(REPO / "suites" / "leaderboard.yaml")
    presets = {m.name: (m.preset, m.defence.name) for m in suite.models}
    assert presets == {"baseline": ("baseline", "attractor"), "attractor": ("attractor", "attractor"),
                       "attractor_full": ("attractor_full", "attractor"), "mlp": ("mlp", "none"),
                       "pgd_at": ("pgd_at", "none"), "stochastic": ("stochastic", "none"),
                       "apudae": ("mlp", "apudae"), "feature_dae": ("mlp", "feature_dae")}


@pytest.mark.slow
def test_every_model_through_the_same_attacks(run):
    _, _, t, meta = run
    assert list(dict.fromkeys(t.model)) == MODELS
    attacked = t[(t.dataset == "mnist") & (t.metric == "accuracy") & (t.kind == "cell") & (t.attack != "none")]
    for m in MODELS:
        labels = set(attacked[attacked.model == m].attack)
        # the rejection-aware attack needs the attractor defence's rejector
        assert labels == ({"fgsm", "pgd", "pgd_bpda"} | ({"rejection_aware"} if m == "attractor" else set())), m
    assert meta["attacks"]["rejection_aware"]["models"] == ["attractor"]
    assert meta["attacks"]["pgd"]["models"] == MODELS
    wc = t[(t.attack == "worst_case_linf") & (t.metric == "n_attacks") & (t.dataset == "mnist")].set_index(["model", "eps"]).value
    assert wc[("attractor", 0.1)] == 4 and wc[("mlp", 0.1)] == 3


@pytest.mark.slow
def test_models_without_rejector_accept_everything_and_have_no_ood_scores(run):
    _, _, t, meta = run
    for m in ["mlp", "pgd_at", "stochastic", "apudae", "feature_dae"]:
        assert meta["models"][m]["threshold"] is None
        rows = t[(t.model == m) & (t.attack == "none")].set_index(["dataset", "metric"]).value
        assert rows[("mnist", "accepted")] == 1.0 and rows[("mnist", "end_to_end_accuracy")] == rows[("mnist", "accuracy")]
        assert np.isnan(rows[("fashion_mnist", "ood_AUROC")])
    assert 0.0 <= t[(t.model == "attractor") & (t.metric == "ood_AUROC") & (t.attack == "none")].value.min() <= 1.0


@pytest.mark.slow
def test_run_json_records_randomized_models_and_trained_defences(run):
    _, _, _, meta = run
    assert meta["models"]["stochastic"]["randomized"] is True
    assert meta["models"]["stochastic"]["params"]["eot_samples"] == 2
    assert all(meta["models"][m]["randomized"] is False for m in MODELS if m != "stochastic")
    for m in ("apudae", "feature_dae"):
        assert meta["models"][m]["defence"]["name"] == m and len(meta["models"][m]["defence"]["weights"]) == 1
    # apudae and feature_dae sit on the same trained MLP as mlp: trained once, the same weights
    assert meta["models"]["apudae"]["weights"] == meta["models"]["mlp"]["weights"] == meta["models"]["feature_dae"]["weights"]
    assert meta["models"]["apudae"]["from_cache"] is True


@pytest.mark.slow
def test_figures_are_written_and_linked(run):
    _, folder, _, meta = run
    files = [f["file"] for f in meta["figures"]]
    assert files == ["accuracy_linf.png", "similarity.png", "iterates_attractor.png"]
    readme = (folder / "README.md").read_text()
    for f in files:
        assert (folder / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({f})" in readme


@pytest.mark.slow
def test_recomputed_cells_give_the_same_bytes(run, data_root):
    """--fresh recomputes every cell (models from the cache): per-cell seeds make the randomized
    model's draws, and so the whole table, repeat exactly."""
    tmp, folder, _, _ = run
    first = (folder / "results.csv").read_bytes()
    again = CliRunner().invoke(app, run_args(SUITE, data_root, tmp / "cache", tmp / "again", "--fresh"))
    assert again.exit_code == 0, again.output
    assert (tmp / "again" / "leaderboard_smoke" / "results.csv").read_bytes() == first
    meta = json.loads((tmp / "again" / "leaderboard_smoke" / "run.json").read_text())
    assert meta["cells"]["from_store"] == 0 and meta["cells"]["computed"] == meta["cells"]["total"]


@pytest.mark.slow
def test_leaderboard_of_the_run(run):
    tmp, _, t, _ = run
    result = CliRunner().invoke(app, ["leaderboard", "--results-dir", str(tmp / "results"), "--all-runs"])
    assert result.exit_code == 0, result.output
    board = json.loads((tmp / "results" / "LEADERBOARD.json").read_text())
    rows = {r["model"]: r for r in board["rows"]}
    assert set(rows) == set(MODELS)
    assert rows["stochastic"]["randomized"] is True and rows["mlp"]["randomized"] is False
    wc = t[(t.attack == "worst_case_linf") & (t.metric == "accuracy") & (t.eps == 0.3) & (t.dataset == "mnist")].set_index("model").value
    ranked = [r["model"] for r in board["rows"]]
    # Sorted by rank (1 + the rows that beat it: tests/test_leaderboard.py checks `beats` against
    # McNemar's and Fisher's tests), then by worst case at 0.3 within a shared rank.
    ranks = [r["rank"] for r in board["rows"]]
    assert ranks == sorted(ranks) and ranks[0] == 1
    built = {r.display: r for r in leaderboard.build(tmp / "results").rows}
    for r in board["rows"]:
        assert r["rank"] == 1 + sum(leaderboard.beats(o, built[r["model"]]) for o in built.values())
    for a, b in zip(board["rows"], board["rows"][1:]):
        assert a["rank"] < b["rank"] or wc[a["model"]] >= wc[b["model"]]
    assert ranked.index("pgd_at") < ranked.index("mlp")  # 12% against 0% of 200 images at 0.3: separated
    attractor = next(r for r in board["rows"] if r["model"] == "attractor")
    assert attractor["numbers"]["worst_case_0.3"]["attacks"] == ["fgsm", "pgd", "pgd_bpda", "rejection_aware"]
    mlp = next(r for r in board["rows"] if r["model"] == "mlp")
    assert mlp["numbers"]["worst_case_0.3"]["attacks"] == ["fgsm", "pgd", "pgd_bpda"]  # no rejector to attack
    assert Path(tmp / "results" / "LEADERBOARD.md").is_file()
