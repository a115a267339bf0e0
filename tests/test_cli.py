import numpy as np
"""The command line end to end on suites/smoke.yaml."""

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from attractor_bench.cli import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, data_root):
    tmp = tmp_path_factory.mktemp("smoke")
    def args(cache):
        return ["run", str(REPO / "suites" / "smoke.yaml"), "--data-root", str(data_root), "--cache-dir", str(tmp / cache),
                "--results-dir", str(tmp / "results"), "--no-progress", "--no-download"]

    first = runner.invoke(app, args("cache1"))
    table1 = pd.read_csv(tmp / "results" / "smoke" / "results.csv") if first.exit_code == 0 else None
    second = runner.invoke(app, args("cache2"))  # a fresh cache: trains again from the same seed
    return tmp, first, second, table1


def test_smoke_run_writes_tables(smoke):
    tmp, first, _, table = smoke
    assert first.exit_code == 0, first.output
    assert "Wrote" in first.output
    assert list(table.columns) == ["model", "attack", "eps", "dataset", "metric", "value"]
    assert set(table.model) == {"baseline", "attractor"}
    assert set(table.dataset) == {"mnist", "fashion_mnist", "cifar10_bw"}
    assert set(table.attack) == {"none", "fgsm", "fgsm_pipeline"}
    assert sorted(set(table.eps.round(6))) == sorted({0.0, round(10 / 255, 6), round(20 / 255, 6)})
    mnist = set(table[table.dataset == "mnist"].metric)
    assert {"accuracy", "accuracy_single_pass", "accepted", "accepted_single_pass", "end_to_end_accuracy",
            "mean_iterations", "perturbation_linf"} <= mnist
    ood = set(table[table.dataset == "fashion_mnist"].metric)
    assert {"ood_accuracy", "ood_precision", "ood_recall", "ood_auroc", "ood_fpr_at_95tpr", "ood_auroc_single_pass"} <= ood
    # every measured perturbation respects its eps, and attacked cells really were perturbed
    linf = table[table.metric == "perturbation_linf"]
    assert (linf.value <= linf.eps + 1e-5).all()
    assert (linf[linf.eps > 0].value > 0.5 * linf[linf.eps > 0].eps).all()
    values = table[table.metric.isin(["accuracy", "ood_accuracy", "ood_auroc"])].value
    assert values.between(0, 1).all()
    readme = (tmp / "results" / "smoke" / "README.md").read_text()
    assert f"attractor-bench run {REPO / 'suites' / 'smoke.yaml'} --results-dir" in readme
    assert "## Choices" in readme and "## Versions" in readme and "## Time" in readme
    assert (tmp / "results" / "smoke" / "run.json").is_file()
    assert not [p for p in (tmp / "results").iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_same_seed_gives_identical_numbers(smoke):
    tmp, _, second, table1 = smoke
    assert second.exit_code == 0, second.output
    table2 = pd.read_csv(tmp / "results" / "smoke" / "results.csv")
    # Known gap (see README): exact identity holds in most runs but not all; a sample whose
    # iteration count sits at the tolerance can flip. Demand agreement to 1e-3 relative and show
    # any difference.
    close = np.isclose(table1.value, table2.value, rtol=1e-3, atol=0, equal_nan=True)
    assert close.all(), table1[~close].assign(second=table2.value[~close]).to_string()
    pd.testing.assert_frame_equal(table1.drop(columns="value"), table2.drop(columns="value"))


def test_metrics_are_wired_consistently(smoke):
    """The OOD tables reuse the MNIST scores of the same (attack, eps): ID recall is MNIST's accepted share."""
    table = smoke[3]
    v = table.set_index(["model", "attack", "eps", "dataset", "metric"]).value
    for (model, attack, eps), _ in table.groupby(["model", "attack", "eps"]):
        accepted = v[(model, attack, eps, "mnist", "accepted")]
        for ds in ("fashion_mnist", "cifar10_bw"):
            assert v[(model, attack, eps, ds, "ood_recall")] == pytest.approx(accepted)
            assert v[(model, attack, eps, ds, "ood_recall_single_pass")] == pytest.approx(v[(model, attack, eps, "mnist", "accepted_single_pass")])
            # 300 ID + 300 OOD: accuracy = (accepted ID + rejected OOD) / 600
            want = (accepted + 1 - v[(model, attack, eps, ds, "accepted")]) / 2
            assert v[(model, attack, eps, ds, "ood_accuracy")] == pytest.approx(want, abs=1e-6)
        e2e = v[(model, attack, eps, "mnist", "end_to_end_accuracy")]
        assert e2e <= min(accepted, v[(model, attack, eps, "mnist", "accuracy")]) + 1e-9


def test_report_rerenders_the_same_readme(smoke):
    folder = smoke[0] / "results" / "smoke"
    before = (folder / "README.md").read_text()
    (folder / "README.md").unlink()
    result = runner.invoke(app, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    assert (folder / "README.md").read_text() == before


def test_bad_suite_exit_code_2_and_nothing_written(tmp_path):
    suite = tmp_path / "bad.yaml"
    suite.write_text("models: {b: {preset: baseline}}\nattacks: [{name: fgsm, eps: [2.0]}]\n")
    result = runner.invoke(app, ["run", str(suite), "--results-dir", str(tmp_path / "results")])
    assert result.exit_code == 2
    assert "attacks[0].eps[0]" in result.output and str(suite) in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "results").exists()


def test_missing_data_exit_code_1(tmp_path):
    result = runner.invoke(app, ["run", str(REPO / "suites" / "smoke.yaml"), "--data-root", str(tmp_path),
                                 "--no-download", "--results-dir", str(tmp_path / "results")])
    assert result.exit_code == 1
    assert "Dataset files missing" in result.output and "MNIST" in result.output
    assert not (tmp_path / "results").exists()


def test_validate_list_and_help():
    ok = runner.invoke(app, ["validate", str(REPO / "suites" / "mnist_fgsm.yaml")])
    assert ok.exit_code == 0 and "OK" in ok.output
    listing = runner.invoke(app, ["list"])
    assert listing.exit_code == 0 and "fgsm" in listing.output and "attractor" in listing.output
    for cmd in ([], ["run"], ["validate"], ["list"]):
        h = runner.invoke(app, [*cmd, "--help"])
        assert h.exit_code == 0 and "Usage" in h.output


def test_ctrl_c_exits_130_and_writes_nothing(tmp_path, monkeypatch):
    import attractor_bench.runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(attractor_bench.runner, "run_suite", interrupted)
    result = runner.invoke(app, ["run", str(REPO / "suites" / "smoke.yaml"), "--results-dir", str(tmp_path / "results")])
    assert result.exit_code == 130
    assert "Interrupted" in result.output
    assert not (tmp_path / "results").exists()
