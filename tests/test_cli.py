"""The command line end to end: suites/micro.yaml in the default run, suites/smoke.yaml (every
kind of attack) in the slow one."""

import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from attractor_bench import schema
from attractor_bench.cli import app
from attractor_bench.summary import decode_samples, interval

from conftest import MICRO, rebuilt_by_report

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def smoke(smoke_run):
    """(tmp folder, CLI result, table) of the session's uninterrupted smoke run."""
    table = pd.read_csv(smoke_run.folder / "results.csv") if smoke_run.result.exit_code == 0 else None
    return smoke_run.tmp, smoke_run.result, table


def test_micro_run_writes_tables_records_and_a_readme(micro_run):
    table = pd.read_csv(micro_run.folder / "results.csv")
    assert list(table.columns) == ["model", "attack", "eps", "dataset", "metric", "value", "kind"]
    assert set(table.kind) == {"cell", "worst_case", "sanity", "indicator", "verdict"}
    assert set(table[table.kind == "sanity"].attack) == {"sanity"}
    assert set(table[table.kind == "verdict"].attack) == {"verdict_linf", "verdict_l2"}
    assert set(table[table.kind == "verdict"].metric) == {"potentially_unreliable"}
    assert set(table[table.kind == "worst_case"].attack) == {"worst_case_linf", "worst_case_l2"}
    summary = json.loads((micro_run.folder / "summary.json").read_text())
    assert [m["name"] for m in summary["models"]] == ["baseline", "attractor"]
    v = table.set_index(["model", "kind", "attack", "eps", "dataset", "metric"]).value
    for m in summary["models"]:
        idx, correct = decode_samples(m["clean"].pop("samples"))  # per image: the leaderboard's McNemar tests (issue 38)
        assert list(idx) == list(range(60)) and correct.mean() == pytest.approx(m["clean"]["accuracy"], abs=1e-6)
        assert m["clean"] == {"accuracy": pytest.approx(v[(m["name"], "cell", "none", 0.0, "mnist", "accuracy")]),
                              "end_to_end_accuracy": pytest.approx(v[(m["name"], "cell", "none", 0.0, "mnist",
                                                                      "end_to_end_accuracy")]), "n": 60,
                              "interval": pytest.approx(interval(m["clean"]["accuracy"], 60), abs=1e-6)}
        linf = next(w for w in m["worst_case"] if w["norm"] == "linf")
        assert linf["accuracy"] == pytest.approx(v[(m["name"], "worst_case", "worst_case_linf", 0.1, "mnist", "accuracy")])
        assert linf["attacks"] == ["fgsm", "transfer_pgd"] and linf["n"] == 60
        assert linf["interval"][0] <= linf["accuracy"] <= linf["interval"][1]
        assert {w["eps"] for w in m["worst_case"] if w["norm"] == "l2"} == {1.0, 2.0}
    assert "Wrote" in micro_run.result.output and "clean" in micro_run.result.output  # the CLI summary
    assert not [p for p in micro_run.folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_report_rerenders_the_same_readme(micro_run, tmp_path):
    written, rebuilt = rebuilt_by_report(micro_run.folder, tmp_path, "README.md")
    assert rebuilt == written


def test_a_run_writes_the_readme_that_report_renders_from_its_files(micro_run, tmp_path):
    """A README number is rounded from results.csv (6 significant digits), not from memory: an acceptance rate of
    0.9945504 is 0.99455 in the file, 99.45% in the README (rounded from memory it read 99.46%, and the committed
    mnist_adaptive README differed from `attractor-bench report`'s in that digit)."""
    from attractor_bench import flags
    from attractor_bench.report import run_suite, write_results
    from attractor_bench.result import RunResult
    from attractor_bench.summary import read_table

    meta = json.loads((micro_run.folder / "run.json").read_text())
    table = read_table(micro_run.folder / "results.csv")
    row = (table.model == "attractor") & (table.attack == "none") & (table.dataset == "mnist") & (table.metric == "accepted")
    assert row.sum() == 1
    table.loc[row, "value"] = 0.9945504
    result = RunResult(run_suite(micro_run.folder, meta), table, meta, robust_flags=flags.read(micro_run.folder))
    folder = write_results(result, tmp_path / "written", meta["command"])
    readme = (folder / "README.md").read_text()
    assert "99.45" in readme and "99.46" not in readme
    written, rebuilt = rebuilt_by_report(folder, tmp_path, "README.md")
    assert rebuilt == written


def test_report_rerenders_the_run_as_it_ran_after_its_suite_file_changed(micro_run, tmp_path):
    """The run's folder keeps the suite it ran (suite.yaml): an edit to the suite file since (an attack
    dropped, a model added) does not change, or break, the re-rendered README."""
    import json
    import shutil

    folder = tmp_path / "micro"
    shutil.copytree(micro_run.folder, folder)
    assert (folder / "suite.yaml").read_text() == MICRO.read_text()
    edited = tmp_path / "suites" / "micro.yaml"
    edited.parent.mkdir()
    text = MICRO.read_text()
    first = next(line for line in text.splitlines() if line.lstrip().startswith("- {name:"))
    edited.write_text(text.replace(first + "\n", ""))
    meta = json.loads((folder / "run.json").read_text())
    meta["suite_path"] = str(edited)
    (folder / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    before = (folder / "README.md").read_text()
    (folder / "README.md").unlink()
    result = runner.invoke(app, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    assert (folder / "README.md").read_text() == before.replace(f"(suite `{MICRO}`", f"(suite `{edited}`")


@pytest.mark.slow
def test_smoke_run_writes_tables(smoke):
    tmp, first, table = smoke
    assert first.exit_code == 0, first.output
    assert "Wrote" in first.output
    assert list(table.columns) == ["model", "attack", "eps", "dataset", "metric", "value", "kind"]
    assert set(table.model) == {"baseline", "attractor"}
    assert set(table.dataset) == {"mnist", "fashion_mnist", "cifar10_bw"}
    attacks = {"fgsm", "fgsm_pipeline", "pgd", "pgd_bpda", "transfer_pgd", "rejection_aware", "square", "deepfool"}
    numbers = table[table.kind.isin(["cell", "worst_case", "sanity"])]
    assert set(numbers.attack) == {"none", "sanity", "worst_case_linf", "worst_case_linf_all_images", "worst_case_l2"} | attacks
    assert set(table[table.kind == "verdict"].attack) == {"verdict_linf", "verdict_l2"}
    assert set(table[table.kind == "indicator"].attack) - attacks <= {"model_checks", "model_checks_pgd_eps1_pipeline",
                                                                     "model_checks_pgd_eps1_bpda", "worst_case_linf",
                                                                     "worst_case_l2"}
    assert sorted(set(table.eps.round(6))) == sorted({0.0, round(10 / 255, 6), round(20 / 255, 6), 0.5, 1.0, 2.0})
    mnist = set(table[table.dataset == "mnist"].metric)
    assert {"accuracy", "accuracy_single_pass", "accepted", "accepted_single_pass", "end_to_end_accuracy",
            "mean_iterations", "perturbation_linf"} <= mnist
    ood = set(table[table.dataset == "fashion_mnist"].metric)
    assert {"ood_accuracy", "ood_precision", "ood_recall", "ood_AUROC", "ood_AUPR-IN", "ood_AUPR-OUT", "ood_FPR95TPR",
            "ood_AUROC_single_pass"} <= ood
    # every measured perturbation respects its eps, and attacked cells really were perturbed
    linf = table[(table.metric == "perturbation_linf") & (table.attack != "deepfool")]
    assert (linf.value <= linf.eps + 1e-5).all()
    moved = linf[linf.attack.isin(["fgsm", "fgsm_pipeline", "pgd", "pgd_bpda", "transfer_pgd"]) & (linf.eps > 0)]
    assert len(moved) and (moved.value > 0.5 * moved.eps).all()
    l2 = table[(table.metric == "perturbation_l2") & (table.attack == "deepfool")]
    assert len(l2) == 4 and (l2.value <= l2.eps + 1e-5).all()
    assert (l2[l2.model == "baseline"].value > 0).all()  # the tiny attractor misclassifies most images already
    values = table[table.metric.isin(["accuracy", "ood_accuracy", "ood_AUROC", "ood_FPR95TPR"])].value
    assert values.between(0, 1).all()
    readme = (tmp / "results" / "smoke" / "README.md").read_text()
    assert f"attractor-bench run {REPO / 'suites' / 'smoke.yaml'} --results-dir" in readme
    assert "## Choices" in readme and "## Versions" in readme and "## Time" in readme
    assert "## Robustness: worst case per sample and the reliability verdict" in readme and "Wall time per attack" in readme
    assert "### Reliability verdict" in readme
    assert (tmp / "results" / "smoke" / "run.json").is_file()
    assert not [p for p in (tmp / "results").iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.mark.slow
def test_worst_case_and_flags(smoke):
    table = smoke[2]
    v = table.set_index(["model", "attack", "eps", "dataset", "metric"]).value
    e = table.eps[np.isclose(table.eps, 20 / 255)].iloc[0]  # as read back from the CSV
    for model in ("baseline", "attractor"):
        at = lambda attack, metric="accuracy": v[(model, attack, e, "mnist", metric)]
        full = ["fgsm", "fgsm_pipeline", "pgd", "pgd_bpda", "transfer_pgd", "rejection_aware"]
        # on all 300 images: no attack alone does better than all of them together, and some image counts
        assert at("worst_case_linf_all_images") <= min(at(a) for a in full) + 1e-9
        assert at("worst_case_linf_all_images", "n_samples") == 300 and at("worst_case_linf_all_images", "n_attacks") == 6
        # on the 50 images the square attack saw, with every attack
        assert at("worst_case_linf", "n_samples") == 50 and at("worst_case_linf", "n_attacks") == 7
        assert at("worst_case_linf") <= at("square") + 1e-9
        assert at("worst_case_linf", "end_to_end_accuracy") <= at("worst_case_linf") + 1e-9
        assert at("square", "n_samples") == 50
        flags = {k[4]: x for k, x in v.items() if k[0] == model and k[1] == "sanity" and k[4].startswith("flag_")}
        assert set(flags) == {"flag_no_collapse_at_eps_0.5", "flag_black_box_beats_white_box",
                              "flag_single_step_beats_iterative", "flag_zero_gradients"}
        assert set(flags.values()) <= {0, 1}
        assert v[(model, "sanity", 0.0, "mnist", "potentially_unreliable")] == max(flags.values())
        assert 0 <= v[(model, "sanity", 0.0, "mnist", "zero_gradient_share_pipeline")] <= 1


@pytest.mark.slow
def test_metrics_are_wired_consistently(smoke):
    """The OOD tables reuse the MNIST scores of the same (attack, eps): ID recall is MNIST's accepted share."""
    table = smoke[2]
    v = table.set_index(["model", "attack", "eps", "dataset", "metric"]).value
    for (model, attack, eps), _ in table[table.metric == "ood_recall"].groupby(["model", "attack", "eps"]):
        accepted = v[(model, attack, eps, "mnist", "accepted")]
        for ds in ("fashion_mnist", "cifar10_bw"):
            assert v[(model, attack, eps, ds, "ood_recall")] == pytest.approx(accepted)
            assert v[(model, attack, eps, ds, "ood_recall_single_pass")] == pytest.approx(v[(model, attack, eps, "mnist", "accepted_single_pass")])
            # 300 ID + 300 OOD: accuracy = (accepted ID + rejected OOD) / 600
            want = (accepted + 1 - v[(model, attack, eps, ds, "accepted")]) / 2
            assert v[(model, attack, eps, ds, "ood_accuracy")] == pytest.approx(want, abs=1e-6)
        e2e = v[(model, attack, eps, "mnist", "end_to_end_accuracy")]
        assert e2e <= min(accepted, v[(model, attack, eps, "mnist", "accuracy")]) + 1e-9


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
    flat = " ".join(listing.output.replace("│", " ").split())  # the table wraps descriptions over lines
    standard, art_ensemble = flat.split("autoattack_standard", 1)[1], flat.split("autoattack_art", 1)[1]
    assert "the authors' code" in standard[:200] and "comparable with published" in standard[:300]
    assert "not standard AutoAttack, not comparable" in art_ensemble[:300]
    for cmd in ([], ["run"], ["validate"], ["list"]):
        h = runner.invoke(app, [*cmd, "--help"])
        assert h.exit_code == 0 and "Usage" in h.output


def test_ctrl_c_exits_130_and_writes_nothing(tmp_path, monkeypatch):
    import attractor_bench.runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(attractor_bench.runner, "run_suite", interrupted)  # the CLI imports it when it runs
    result = runner.invoke(app, ["run", str(REPO / "suites" / "smoke.yaml"), "--results-dir", str(tmp_path / "results")])
    assert result.exit_code == 130
    assert "Interrupted" in result.output
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("folder", sorted(p.name for p in (REPO / "results").iterdir() if (p / "summary.json").is_file()))
def test_committed_results_readmes_are_what_report_renders_from_their_files(folder, tmp_path):
    """Every committed README says what its results.csv and run.json hold (no hand edits, no drift)."""
    import shutil

    copy = tmp_path / folder
    shutil.copytree(REPO / "results" / folder, copy)
    result = runner.invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    assert (copy / "README.md").read_text() == (REPO / "results" / folder / "README.md").read_text()


def test_a_message_with_a_long_path_stays_one_line(tmp_path):
    # CI checks out under a long path; a wrapped message breaks the path a user copies (and broke a test)
    deep = tmp_path.joinpath(*["a_long_folder_name"] * 8)
    deep.mkdir(parents=True)
    for f in (REPO / "suites").glob("*.yaml"):
        shutil.copy(f, deep)
    ok = runner.invoke(app, ["validate", str(deep / "ood.yaml")])
    assert ok.exit_code == 0 and ok.output.count("\n") == 1, ok.output
    missing = runner.invoke(app, ["validate", str(deep / "absent.yaml")])
    assert missing.exit_code != 0 and f"{deep / 'absent.yaml'}: suite file not found" in missing.output


def test_committed_reproduction_document_is_what_it_renders_from_the_results():
    from attractor_bench.reproduction import render
    assert (REPO / "docs" / "REPRODUCTION.md").read_text() == render(REPO / "results")


def test_reproduction_verdicts_follow_the_tolerance_and_the_attack():
    from attractor_bench.reproduction import TOLERANCE, Reading, _verdict
    alike = Reading("r", "f", "fgsm", True, stopping="", cost="")
    own_cost = Reading("t", "f", "fgsm_training", False, stopping="", cost="")
    assert _verdict(50.0, [("a", alike, 50.0 + TOLERANCE)]) == "reproduced (a)"
    assert _verdict(50.0, [("a", alike, 47.9), ("b", own_cost, 49.0)]) == \
        "reproduced only under an attack that is not the same for the two networks"
    assert _verdict(50.0, [("a", alike, 40.0), ("b", alike, 55.5)]) == "**not reproduced** (closest: 55.50, b, +5.50 points)"
    assert _verdict(50.0, []) == "not measured"


def test_reproduction_without_its_runs_says_which_and_writes_nothing(tmp_path):
    result = runner.invoke(app, ["reproduction", "--results-dir", str(tmp_path), "--output", str(tmp_path / "R.md")])
    assert result.exit_code == 1 and "mnist_fgsm/results.csv not found" in result.output
    assert not (tmp_path / "R.md").exists()


HEAVY = ("torch", "art", "pandas", "matplotlib")


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["schema"], ["validate", "--help"]])
def test_help_version_and_schema_do_not_import_torch(args):
    """The CLI imports what a command needs when it runs (the one module allowed to: see
    tests/test_architecture.py), so `--help` starts in a fraction of a second."""
    code = ("import sys\nfrom attractor_bench.cli import app\ntry:\n    app(sys.argv[1:])\nexcept SystemExit as e:\n"
            f"    assert not e.code, e.code\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
    assert done.stdout.strip()


def test_version_and_schema():
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout == f"attractor-bench {importlib.metadata.version('attractor-bench')}\n"
    printed = runner.invoke(app, ["schema"])
    assert printed.exit_code == 0 and json.loads(printed.stdout) == schema.json_schema()


def test_validate_json_gives_the_parsed_suite_or_the_error(tmp_path):
    from attractor_bench.config import load_suite
    ok = runner.invoke(app, ["validate", str(REPO / "suites" / "micro.yaml"), "--json"])
    assert ok.exit_code == 0, ok.output
    doc, suite = json.loads(ok.stdout), load_suite(REPO / "suites" / "micro.yaml")
    assert doc["ok"] is True and doc["errors"] == [] and doc["summary"]["kind"] == "suite"
    summary = doc["summary"]
    assert [m["name"] for m in summary["models"]] == [m.name for m in suite.models]
    assert [(a["label"], a["norm"], a["eps"]) for a in summary["attacks"]] == \
        [(a.label, a.norm, list(a.eps)) for a in suite.attacks]
    assert summary["models"][0]["train"]["n_train"] == suite.models[0].train.n_train
    assert summary["contracts"]["models"] == len(suite.models) and summary["datasets"] == ["mnist", *suite.data.ood]
    ood = json.loads(runner.invoke(app, ["validate", str(REPO / "suites" / "ood_micro.yaml"), "--json"]).stdout)
    assert ood["ok"] and ood["summary"]["kind"] == "ood" and ood["summary"]["models"] == ["baseline", "attractor"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: {b: {preset: baseline}}\nattacks: [{name: fgsm, eps: [2.0]}]\n")
    refused = runner.invoke(app, ["validate", str(bad), "--json"])
    assert refused.exit_code == 2
    doc = json.loads(refused.stdout)  # only JSON on stdout; the message line goes to stderr as always
    assert doc == {"suite": str(bad), "ok": False, "summary": None,
                   "errors": [f"{bad}: attacks[0].eps[0]: 2 is outside [0, 1]."]}
    assert "Error:" in refused.stderr
    missing = runner.invoke(app, ["validate", str(tmp_path / "absent.yaml"), "--json"])
    assert missing.exit_code == 2 and "suite file not found" in json.loads(missing.stdout)["errors"][0]


def test_list_json_has_what_list_shows():
    from attractor_bench.plugins import GROUPS, available
    listed = runner.invoke(app, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    doc = json.loads(listed.stdout)
    assert doc["groups"] == GROUPS
    for kind in ("model", "defence", "attack"):
        assert [(e["name"], e["origin"]) for e in doc[f"{kind}s"]] == [(n, o) for n, o, _ in available(kind)]
        assert all(e["description"] for e in doc[f"{kind}s"])
    attacks, models = {e["name"]: e for e in doc["attacks"]}, {e["name"]: e for e in doc["models"]}
    assert (attacks["fgsm"]["norm"], attacks["fgsm"]["kind"], attacks["fgsm"]["bounded"]) == ("linf", "gradient", True)
    assert (attacks["deepfool"]["norm"], attacks["deepfool"]["bounded"]) == ("l2", False)
    assert attacks["square"]["kind"] == "score"
    assert models["baseline"]["type"] == "attractor preset" and models["baseline"]["train"]["weights"][1] == 0.0
    assert models["mlp"]["type"] == "recipe" and "max_epochs" in models["mlp"]["params"]


def test_the_train_command_hands_each_suite_to_train_suite_and_says_what_it_trained(tmp_path, data_root, monkeypatch):
    """The `train` command's own lines, in the default run (the trainings themselves are in the slow
    test_checkpoints): each suite goes to `preparation.train_suite` with the options given, and the line
    it prints counts what was trained now."""
    from typer.testing import CliRunner

    from attractor_bench import preparation
    from attractor_bench.cli import app

    seen = []

    def fake(spec, **kw):
        seen.append((spec.name, kw["device"], kw["cache_dir"]))
        return {"a": {"from_cache": True}, "b": {}}

    monkeypatch.setattr(preparation, "train_suite", fake)
    result = CliRunner().invoke(app, ["train", "suites/micro.yaml", "--data-root", str(data_root), "--cache-dir",
                                      str(tmp_path / "cache"), "--no-download", "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert seen == [("micro", "cpu", tmp_path / "cache")]
    assert "micro: 2 models ready (1 trained now: b)" in result.output
