"""The named protocol (issue 39): derived from suites/leaderboard.yaml as parsed, pinned by version; a run's
model satisfies it only with the same evaluation; the leaderboard ranks those; `benchmark` runs it on one model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attractor_bench import benchmark, leaderboard, protocol
from attractor_bench.cli import app

ROOT = Path(__file__).resolve().parents[1]
MICRO = """seed: 0
worst_case: cascade
data: {n_test: 8, n_ood: 8, ood: [fashion_mnist]}
models:
  mlp: {preset: mlp, defence: {name: none}, params: {n_train: 300, max_epochs: 1}}
defence: {name: attractor, tol: 0.001, max_iter: 1, backward: unrolled}
rejector: {threshold: 0.8}
attacks:
  - {name: fgsm, eps: [0.1, 0.3], target: pipeline}
  - {name: pgd, eps: [0.1, 0.3], target: pipeline, ood: false, params: {max_iter: 2}}
  - {name: pgd, label: transfer_pgd, eps: [0.1], target: transfer, source: mlp, ood: false, params: {max_iter: 2}}
"""


def _run(suite: str) -> dict:
    return json.loads((ROOT / "results" / suite / "run.json").read_text())


def test_the_pinned_fingerprint_is_the_one_the_suites_give():
    p = protocol.PROTOCOL
    assert protocol.fingerprint(p) == p.fingerprint, (
        f"{p.suite} or {p.ood_suite} changed the protocol's evaluation: name a new version of it in "
        f"attractor_bench/protocol.py (PROTOCOL) with fingerprint {protocol.fingerprint(p)}")
    assert p.label == "mnist-linf v1"
    with_rejector, plain = protocol.expected(p, True), protocol.expected(p, False)
    assert set(with_rejector["attacks"]) - set(plain["attacks"]) == {"rejection_aware"}
    assert plain["n_images"] == {"cifar10_bw": 1000, "fashion_mnist": 1000, "mnist": 1000}
    assert plain["attacks"]["autoattack_standard"]["eps"] == [0.1, 0.3]
    assert protocol.ood_part(p)["attacks"] == ["pgd", "apgd", "square"]


def test_committed_runs_are_judged_by_their_evaluation():
    lb, sota, fgsm = _run("leaderboard"), _run("leaderboard_sota"), _run("mnist_fgsm")
    assert protocol.satisfied(lb, "attractor", True) == "mnist-linf v1"
    assert protocol.satisfied(lb, "mlp", False) == "mnist-linf v1"
    assert protocol.satisfied(lb, "attractor", False) is None  # compared without the rejector's attack: not equal
    assert protocol.satisfied(sota, "cnn_at", False) == "mnist-linf v1"  # the regenerated run: every protocol attack
    no_transfer = copy.deepcopy(sota)
    no_transfer["attacks"].pop("transfer_pgd")
    assert protocol.satisfied(no_transfer, "cnn_at", False) is None  # one attack fewer: not the protocol
    assert protocol.satisfied(fgsm, "attractor", True) is None
    for change in (lambda m: m["attacks"]["pgd"]["eps"].pop(), lambda m: m["n_images"].update(mnist=999),
                   lambda m: m["attacks"]["apgd_ce"].update(params={"max_iter": 10}), lambda m: m.update(seed=1),
                   lambda m: m.update(worst_case="full")):
        meta = copy.deepcopy(lb)
        change(meta)
        assert protocol.satisfied(meta, "mlp", False) is None


def test_the_leaderboard_ranks_the_protocol_runs_and_lists_the_others(tmp_path):
    import shutil

    from conftest import as_current

    results = tmp_path / "results"  # the committed records read as current (stale until issue 38's regeneration)
    shutil.copytree(ROOT / "results", results)
    as_current(results)
    board = leaderboard.build(results, protocol.PROTOCOL.label)
    custom = {(c["model"], c["suite"]) for c in board.custom}
    assert ("attractor", "mnist_fgsm") in custom and board.protocol == "mnist-linf v1"
    assert all(s in ("leaderboard", "leaderboard_sota", "leaderboard_attractor_at") for r in board.rows for s in r.suites)
    assert "attractor_at_01_long" in {r.display for r in board.rows}
    everything = leaderboard.build(results)  # no protocol: every current run ranks (the earlier rule)
    assert not everything.custom and "mnist_fgsm" in {s for r in everything.rows for s in r.suites}


MICRO_OOD = """models_from: [micro_protocol.yaml]
n_test: 8
n_ood: 8
n_validation: 4
ood: [fashion_mnist, uniform_noise]
eps: [0.1]
attacks: [pgd]
k_plus_one: false
budgets: {pgd: {max_iter: 2}}
"""


@pytest.fixture
def micro(tmp_path) -> protocol.Protocol:
    (tmp_path / "micro_protocol.yaml").write_text(MICRO)
    (tmp_path / "micro_protocol_ood.yaml").write_text(MICRO_OOD)
    return protocol.micro(protocol.PROTOCOL, str(tmp_path / "micro_protocol.yaml"), str(tmp_path / "micro_protocol_ood.yaml"))


def test_benchmark_of_the_example_plugin_writes_a_card_and_places_the_row(micro, data_root, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "plugins"))
    common = dict(results_dir=tmp_path / "res", data_root=data_root, cache_dir=tmp_path / "cache", download=False, p=micro)
    card = benchmark("tiny_plugins:small_mlp", name="tiny", params={"n_train": 300}, **common)
    assert card["protocol"] == "mnist-linf-micro v1" and card["n"] == 8
    text = (Path(card["folder"]) / "MODEL_CARD.md").read_text()
    assert card["weights"] in text and "mnist-linf-micro v1" in text and "[" in text.split("| clean |")[1]
    assert {w["eps"] for w in card["worst_case"]} == {0.1, 0.3}
    assert 0 <= card["worst_case_0.3"] <= card["worst_case_0.1"] <= card["clean"] <= 1
    placed = [r["model"] for r in card["placement"]]
    committed = [r["model"] for r in json.loads((ROOT / "results" / "LEADERBOARD.json").read_text())["rows"]]
    assert "tiny" in placed and set(committed) <= set(placed) and len(placed) == len(committed) + 1
    # ranked by the leaderboard's own rule: the committed rows keep their order and their # (one more below the new row)
    board = json.loads((ROOT / "results" / "LEADERBOARD.json").read_text())["rows"]
    assert [m for m in placed if m != "tiny"] == committed
    for r, c in zip([r for r in card["placement"] if not r["new"]], board):
        assert r["rank"] - c["rank"] in (0, 1)  # one more where the new row beats it
    run = json.loads((Path(card["folder"]) / "run.json").read_text())
    assert set(run["models"]) == {"tiny", "mlp"}  # the model and the protocol's transfer source
    ood = json.loads((Path(card["ood_folder"]) / "ood.json").read_text())  # the protocol's OOD part, on the model alone
    assert set(ood["models"]) == {"tiny"} and ood["n_images"] == {"mnist": 8, "fashion_mnist": 8, "uniform_noise": 8}
    assert ood["best_rejector"]["tiny"] == card["ood_rejector"] in {"msp", "energy"}
    assert set(card["ood_sets"]) == {"fashion_mnist", "uniform_noise"}
    assert card["ood_robust_lowest"] == min(v["robust"] for v in card["ood_sets"].values())
    assert f"Lowest robust AUROC: {card['ood_robust_lowest']:.4f}" in text and "(mnist-linf-micro v1)" in text


def test_benchmark_command_refuses_an_unknown_model_in_one_line(tmp_path):
    out = CliRunner().invoke(app, ["benchmark", "nope_not_a_model", "--results-dir", str(tmp_path), "--no-progress"])
    assert out.exit_code == 2 and "nope_not_a_model" in out.output and "Traceback" not in out.output


def test_the_protocols_attacks_on_a_rejector_run_where_the_defence_may_bring_one(monkeypatch):
    """By capability, not by name: a registered defence that brings a rejector (the attractor's) and an outside
    defence (known once built) keep the protocol's attacks on the rejector; no defence, or one that brings none,
    runs the classifier's attacks alone."""
    from attractor_bench.benchmarking import protocol_suite
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "plugins"))

    def on_rejector(defence):
        suite = protocol_suite("tiny_plugins:small_mlp", "tiny", defence, None, None)
        return {a.label for a in suite.attacks if a.entry.needs_rejector}

    assert on_rejector({"name": "none"}) == set() and on_rejector({"name": "apudae"}) == set()
    assert on_rejector({"name": "attractor"}) == {"rejection_aware"}
    assert on_rejector({"name": "tiny_plugins:quantize"}) == {"rejection_aware"}


@pytest.mark.slow
def test_benchmark_on_other_images_is_a_custom_evaluation(micro, data_root, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "plugins"))
    common = dict(results_dir=tmp_path / "res", data_root=data_root, cache_dir=tmp_path / "cache", download=False, p=micro)
    other = benchmark("tiny_plugins:small_mlp", name="tiny", n=4, params={"n_train": 300}, **common)
    assert other["protocol"] is None and other["n"] == 4  # other images: a custom evaluation
    text = (Path(other["folder"]) / "MODEL_CARD.md").read_text()
    assert "custom evaluation" in text and "a custom evaluation of the OOD part" in text
