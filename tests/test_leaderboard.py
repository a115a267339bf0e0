"""`attractor-bench leaderboard` on small synthetic results folders (the new run.json format) and on
a copy of the committed results."""

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attractor_bench.cli import app
from attractor_bench.leaderboard import UNRELIABLE

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
OUTPUTS = ("LEADERBOARD.md", "LEADERBOARD.csv", "LEADERBOARD.json", "leaderboard_worst_case.png")

def attack(norm="linf", eps=(0.1, 0.3), kind="gradient", target="pipeline", n=None, name=None):
    return {"name": name or "x", "norm": norm, "kind": kind, "target": target, "n": n, "eps": list(eps)}


def model(clean=0.9, wc=None, auroc=None, unreliable=None, flags=(), weights=None, threshold=0.8, randomized=False,
          defence="attractor"):
    """A model's metadata and rows. wc: {eps: (accuracy, e2e, n_samples, n_attacks)};
    auroc: {dataset: {attack label or 'none': {eps: value}}}."""
    rows = [("none", 0, "mnist", "accuracy", clean), ("none", 0, "mnist", "end_to_end_accuracy", clean - 0.05),
            ("none", 0, "mnist", "accepted", 0.95)]
    for eps, (acc, e2e, n, k) in (wc or {}).items():
        rows += [("worst_case_linf", eps, "mnist", "accuracy", acc), ("worst_case_linf", eps, "mnist", "end_to_end_accuracy", e2e),
                 ("worst_case_linf", eps, "mnist", "accepted_wrong", 0.1), ("worst_case_linf", eps, "mnist", "n_samples", n),
                 ("worst_case_linf", eps, "mnist", "n_attacks", k)]
    for ds, by_attack in (auroc or {}).items():
        for label, by_eps in by_attack.items():
            rows += [(label, eps, ds, "ood_auroc", v) for eps, v in by_eps.items()]
    if unreliable is not None:
        rows += [("sanity", 0, "mnist", f, 1 if f in flags else 0) for f in ("flag_no_collapse_at_eps_0.5", "flag_zero_gradients")]
        rows.append(("sanity", 0, "mnist", "potentially_unreliable", int(unreliable)))
    meta = {"preset": "x", "weights": weights, "randomized": randomized, "threshold": threshold,
            "defence": {"name": defence, "origin": "built-in", "params": {}}}
    return meta, rows


def write_run(root: Path, suite: str, models: dict, attacks: dict, date="2026-12-01 10:00 UTC", commit="abc1234") -> Path:
    folder = root / suite
    folder.mkdir(parents=True)
    lines = ["model,attack,eps,dataset,metric,value"]
    for name, (_, rows) in models.items():
        lines += [f"{name},{a},{e},{d},{m},{'' if v is None else v}" for a, e, d, m, v in rows]
    (folder / "results.csv").write_text("\n".join(lines) + "\n")
    meta = {"date": date, "commit": commit, "command": f"attractor-bench run suites/{suite}.yaml", "seed": 0,
            "suite_path": f"suites/{suite}.yaml", "attacks": attacks,
            "models": {name: m for name, (m, _) in models.items()}}
    (folder / "run.json").write_text(json.dumps(meta))
    return folder


def squeeze(text: str) -> str:
    """Output without whitespace: the console wraps long lines, paths included."""
    return "".join(text.split())


def invoke(results: Path):
    return runner.invoke(app, ["leaderboard", "--results-dir", str(results)])


def board_json(results: Path) -> dict:
    result = invoke(results)
    assert result.exit_code == 0, result.output
    return json.loads((results / "LEADERBOARD.json").read_text())


def row(doc: dict, name: str) -> dict:
    (r,) = [r for r in doc["rows"] if r["model"] == name]
    return r


def test_merge_takes_each_number_from_the_suite_with_most_attacks(tmp_path):
    res = tmp_path / "results"
    three = {"fgsm": attack(), "pgd": attack(eps=(0.1,)), "square": attack(eps=(0.1,), kind="score")}
    two = {"pgd": attack(), "apgd": attack()}
    # the same trained network (name + weights) in two suites
    write_run(res, "suite_a", {"net": model(clean=0.91, weights="w1", wc={0.1: (0.50, 0.45, 100, 3), 0.3: (0.30, 0.25, 100, 1)})},
              three, date="2026-12-01 10:00 UTC", commit="aaaaaaa")
    write_run(res, "suite_b", {"net": model(clean=0.92, weights="w1", wc={0.1: (0.40, 0.35, 50, 2), 0.3: (0.20, 0.15, 50, 2)})},
              two, date="2026-12-02 10:00 UTC", commit="bbbbbbb")
    doc = board_json(res)
    assert [r["model"] for r in doc["rows"]] == ["net"]  # one row: merged
    nums = doc["rows"][0]["numbers"]
    # 0.1: suite_a ran 3 attacks there (more than suite_b's 2), though suite_b is later
    assert nums["worst_case_linf_0.1"] == {"value": 0.5, "suite": "suite_a", "commit": "aaaaaaa", "date": "2026-12-01 10:00 UTC",
                                           "n": 100, "n_attacks": 3, "attacks": ["fgsm", "pgd", "square"]}
    assert nums["end_to_end_linf_0.1"]["value"] == 0.45 and nums["end_to_end_linf_0.1"]["suite"] == "suite_a"
    # 0.3: suite_b's 2 attacks beat suite_a's 1
    assert nums["worst_case_linf_0.3"]["value"] == 0.2 and nums["worst_case_linf_0.3"]["suite"] == "suite_b"
    assert nums["worst_case_linf_0.3"]["attacks"] == ["pgd", "apgd"]
    assert nums["end_to_end_linf_0.3"]["value"] == 0.15 and nums["end_to_end_linf_0.3"]["suite"] == "suite_b"
    # clean: no attacks on either side, so the later run
    assert nums["clean_accuracy"]["value"] == 0.92 and nums["clean_accuracy"]["suite"] == "suite_b"
    assert doc["rows"][0]["suites"] == ["suite_a", "suite_b"]
    with open(res / "LEADERBOARD.csv", newline="") as f:
        (line,) = list(csv.DictReader(f))
    assert line["worst_case_linf_0.1"] == "0.5000" and line["worst_case_linf_0.3"] == "0.2000"
    assert "worst_case_linf_0.1=suite_a" in line["provenance"] and "worst_case_linf_0.3=suite_b" in line["provenance"]
    assert line["commits"] == "aaaaaaa;bbbbbbb"
    md = (res / "LEADERBOARD.md").read_text()
    assert "`fgsm`, `pgd`, `square` (3)" in md  # suite_a's attacks at 0.1


def test_ties_go_to_the_later_date_then_the_first_suite_name(tmp_path):
    res = tmp_path / "results"
    a = {"pgd": attack()}
    write_run(res, "zeta", {"net": model(clean=0.80, weights="w", wc={0.1: (0.3, 0.2, 10, 1)})}, a, date="2026-12-01 10:00 UTC")
    write_run(res, "alpha", {"net": model(clean=0.70, weights="w", wc={0.1: (0.1, 0.0, 10, 1)})}, a, date="2026-12-01 10:00 UTC")
    write_run(res, "mid", {"net": model(clean=0.60, weights="w")}, a, date="2026-11-30 10:00 UTC")
    nums = board_json(res)["rows"][0]["numbers"]
    assert nums["clean_accuracy"]["suite"] == "alpha" and nums["clean_accuracy"]["value"] == 0.7
    assert nums["worst_case_linf_0.1"]["suite"] == "alpha"
    (res / "zeta" / "run.json").write_text((res / "zeta" / "run.json").read_text().replace("2026-12-01", "2026-12-03"))
    nums = board_json(res)["rows"][0]["numbers"]
    assert nums["clean_accuracy"]["suite"] == "zeta" and nums["worst_case_linf_0.1"]["value"] == 0.3


def test_shared_names_get_their_suites_and_old_runs_are_per_suite(tmp_path):
    res = tmp_path / "results"
    a = {"pgd": attack()}
    write_run(res, "s1", {"net": model(weights="w1"), "solo": model(weights="w3")}, a)
    write_run(res, "s2", {"net": model(weights="w2")}, a)
    write_run(res, "s3", {"net": model(weights="w1")}, a)  # same weights as s1's: merged with it
    write_run(res, "s4", {"net": model(weights="w2", defence="none", threshold=None)}, a)  # other defence: another model
    doc = board_json(res)
    assert sorted(r["model"] for r in doc["rows"]) == ["net (s1, s3)", "net (s2)", "net (s4)", "solo"]
    assert row(doc, "net (s4)")["defence"] == "none"
    # without weight fingerprints (runs before they were recorded) every suite has its own model
    for s in ("s1", "s3"):
        meta = json.loads((res / s / "run.json").read_text())
        for m in meta["models"].values():
            del m["weights"]
        (res / s / "run.json").write_text(json.dumps(meta))
    names = sorted(r["model"] for r in board_json(res)["rows"])
    assert names == ["net (s1)", "net (s2)", "net (s3)", "net (s4)", "solo"]


def test_sort_by_worst_case_then_clean_with_missing_values_last(tmp_path):
    res = tmp_path / "results"
    models = {
        "no_wc": model(clean=0.99, weights="1"),
        "only_01": model(clean=0.95, weights="2", wc={0.1: (0.9, 0.8, 10, 1)}),
        "low_03": model(clean=0.90, weights="3", wc={0.1: (0.5, 0.4, 10, 1), 0.3: (0.1, 0.1, 10, 1)}),
        "high_03": model(clean=0.80, weights="4", wc={0.1: (0.4, 0.3, 10, 1), 0.3: (0.2, 0.1, 10, 1)}),
        "tie_03_b": model(clean=0.85, weights="5", wc={0.1: (0.6, 0.3, 10, 1), 0.3: (0.1, 0.0, 10, 1)}),
        "zero_03": model(clean=0.85, weights="8", wc={0.1: (0.05, 0.0, 10, 1), 0.3: (0.0, 0.0, 10, 1)}),
        "clean_tie_b": model(clean=0.97, weights="6"),
        "clean_tie_a": model(clean=0.97, weights="7"),
    }
    write_run(res, "s", models, {"pgd": attack()})
    doc = board_json(res)
    assert [r["model"] for r in doc["rows"]] == [
        "high_03", "tie_03_b", "low_03", "zero_03", "only_01", "no_wc", "clean_tie_a", "clean_tie_b"]  # 0 before missing
    assert [r["rank"] for r in doc["rows"]] == list(range(1, 9))
    assert doc["rows"][4]["numbers"]["worst_case_linf_0.3"]["value"] is None
    md = (res / "LEADERBOARD.md").read_text()
    assert md.index("`high_03`") < md.index("`tie_03_b`") < md.index("`only_01`") < md.index("`no_wc`")


def test_end_to_end_only_for_models_that_reject(tmp_path):
    res = tmp_path / "results"
    write_run(res, "s", {"rejects": model(weights="1", wc={0.1: (0.5, 0.4, 10, 1), 0.3: (0.3, 0.2, 10, 1)}),
                         "plain": model(weights="2", threshold=None, defence="none",
                                        wc={0.1: (0.6, 0.55, 10, 1), 0.3: (0.35, 0.33, 10, 1)})}, {"pgd": attack()})
    doc = board_json(res)
    assert row(doc, "rejects")["numbers"]["end_to_end_linf_0.3"]["value"] == 0.2
    plain = row(doc, "plain")["numbers"]
    assert plain["end_to_end_linf_0.1"] == {"value": None, "note": "no OOD rejector"}
    assert plain["end_to_end_linf_0.3"]["value"] is None and plain["worst_case_linf_0.3"]["value"] == 0.35
    with open(res / "LEADERBOARD.csv", newline="") as f:
        lines = {r["model"]: r for r in csv.DictReader(f)}
    assert lines["plain"]["end_to_end_linf_0.3"] == "" and lines["plain"]["threshold"] == ""
    assert lines["rejects"]["end_to_end_linf_0.3"] == "0.2000"
    md = (res / "LEADERBOARD.md").read_text()
    plain_line = next(line for line in md.splitlines() if line.startswith("| 1 | `plain`"))
    cells = [c.strip() for c in plain_line.split("|")[1:-1]]
    assert cells[5:9] == ["60.00 (10)", "35.00 (10)", "—", "—"]
    rejects_line = next(line for line in md.splitlines() if "| `rejects`" in line)
    assert [c.strip() for c in rejects_line.split("|")[1:-1]][7:9] == ["40.00", "20.00"]


def test_attacked_auroc_is_the_lowest_linf_cell_at_eps_01_and_names_its_attack(tmp_path):
    res = tmp_path / "results"
    attacks = {"fgsm": attack(), "rejection_aware": attack(), "pgd_l2": attack(norm="l2", eps=(0.1, 1.0))}
    auroc = {"fashion_mnist": {"none": {0: 0.95}, "fgsm": {0.1: 0.90, 0.3: 0.50}, "rejection_aware": {0.1: 0.74, 0.3: 0.40},
                               "pgd_l2": {0.1: 0.30}},  # L2 and eps 0.3 cells do not count
             "cifar10_bw": {"none": {0: 0.99}, "fgsm": {0.1: 0.80}, "rejection_aware": {0.1: 0.85}}}
    write_run(res, "s", {"m": model(weights="1", auroc=auroc),
                         "no_rejector": model(weights="2", threshold=None,
                                              auroc={"fashion_mnist": {"none": {0: None}, "fgsm": {0.1: None}}})}, attacks)
    doc = board_json(res)
    nums = row(doc, "m")["numbers"]
    assert nums["ood_auroc_fashion_mnist_clean"]["value"] == 0.95
    assert nums["ood_auroc_fashion_mnist_linf_0.1"]["value"] == 0.74
    assert nums["ood_auroc_fashion_mnist_linf_0.1"]["attack"] == "rejection_aware"
    assert nums["ood_auroc_fashion_mnist_linf_0.1"]["attacks"] == ["fgsm", "rejection_aware"]
    assert nums["ood_auroc_cifar10_bw_linf_0.1"]["value"] == 0.8 and nums["ood_auroc_cifar10_bw_linf_0.1"]["attack"] == "fgsm"
    none = row(doc, "no_rejector")["numbers"]
    assert none["ood_auroc_fashion_mnist_clean"]["value"] is None and none["ood_auroc_fashion_mnist_linf_0.1"]["value"] is None
    md = (res / "LEADERBOARD.md").read_text()
    assert "95.00 / 74.00" in md and "99.00 / 80.00" in md and "— / —" in md
    assert "Fashion-MNIST AUROC at L-inf 0.1 (lowest under `rejection_aware`" in md
    with open(res / "LEADERBOARD.csv", newline="") as f:
        lines = {r["model"]: r for r in csv.DictReader(f)}
    assert lines["m"]["ood_auroc_fashion_mnist_linf_0.1_attack"] == "rejection_aware"
    assert lines["m"]["ood_auroc_fashion_mnist_linf_0.1"] == "0.7400"


def test_unreliable_flag_is_read_and_shown(tmp_path):
    res = tmp_path / "results"
    write_run(res, "s", {"bad": model(weights="1", unreliable=True, flags=("flag_zero_gradients",)),
                         "good": model(weights="2", unreliable=False), "unchecked": model(weights="3")}, {"pgd": attack()})
    doc = board_json(res)
    assert row(doc, "bad")["unreliable"] is True and row(doc, "bad")["flags_raised"] == {"s": ["flag_zero_gradients"]}
    assert row(doc, "good")["unreliable"] is False and row(doc, "unchecked")["unreliable"] is None
    md = (res / "LEADERBOARD.md").read_text()
    bad_line = next(line for line in md.splitlines() if "| `bad`" in line)
    assert f"**{UNRELIABLE}**" in bad_line
    assert "no flag" in next(line for line in md.splitlines() if "| `good`" in line)
    assert "`s` raised `flag_zero_gradients`" in md
    with open(res / "LEADERBOARD.csv", newline="") as f:
        assert {r["model"]: r["unreliable"] for r in csv.DictReader(f)} == {"bad": "yes", "good": "no", "unchecked": ""}


def test_rerun_gives_byte_identical_files_and_leaves_no_temporary_files(tmp_path):
    res = tmp_path / "results"
    write_run(res, "s", {"a": model(weights="1", wc={0.05: (0.7, 0.6, 10, 2), 0.1: (0.5, 0.4, 10, 2), 0.3: (0.1, 0.1, 10, 2)}),
                         "b": model(weights="2", wc={0.1: (0.3, 0.2, 10, 2)})},
              {"pgd": attack(eps=(0.05, 0.1, 0.3)), "fgsm": attack(eps=(0.05, 0.1, 0.3))})
    first = invoke(res)
    assert first.exit_code == 0, first.output
    for name in OUTPUTS:
        assert name in squeeze(first.output)
    before = {n: (res / n).read_bytes() for n in OUTPUTS}
    assert before["leaderboard_worst_case.png"].startswith(b"\x89PNG")
    assert "](leaderboard_worst_case.png)" in before["LEADERBOARD.md"].decode()
    second = invoke(res)
    assert second.exit_code == 0, second.output
    assert {n: (res / n).read_bytes() for n in OUTPUTS} == before
    assert sorted(p.name for p in res.iterdir()) == sorted([*OUTPUTS, "s"])
    doc = json.loads(before["LEADERBOARD.json"])
    assert "2026" not in json.dumps(doc["columns_doc"])  # the only dates are the runs' own
    assert row(doc, "a")["numbers"]["worst_case_linf_0.3"]["value"] == 0.1


def _nothing_written(res: Path) -> None:
    if res.is_dir():
        names = {p.name for p in res.iterdir()}
        assert not names & set(OUTPUTS) and not any(n.startswith(".leaderboard") for n in names), names


def test_missing_results_dir_is_a_usage_error(tmp_path):
    result = invoke(tmp_path / "nope")
    assert result.exit_code == 2, result.output
    flat = squeeze(result.output)
    assert "doesnotexist" in flat and "--results-dir" in flat and "Traceback" not in result.output
    assert not (tmp_path / "nope").exists()


def test_results_dir_without_runs_is_a_usage_error(tmp_path):
    (tmp_path / "results" / "empty_suite").mkdir(parents=True)
    result = invoke(tmp_path / "results")
    assert result.exit_code == 2, result.output
    assert "no<suite>/results.csv" in squeeze(result.output)
    _nothing_written(tmp_path / "results")


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "results.csv").write_text("model,attack,eps,metric\nm,none,0,accuracy\n"), "missing column(s) dataset, value"),
    (lambda f: (f / "results.csv").write_text('model,attack,eps,dataset,metric,value\nm,none,zero,mnist,accuracy,0.9\n'),
     "'eps' is not a number in row(s) 2"),
    (lambda f: (f / "run.json").unlink(), "run.json is missing"),
    (lambda f: (f / "run.json").write_text("{not json"), "not valid JSON"),
])
def test_broken_run_is_an_error_and_nothing_is_written(tmp_path, damage, message):
    res = tmp_path / "results"
    write_run(res, "good", {"m": model(weights="1")}, {"pgd": attack()})
    folder = write_run(res, "broken", {"m": model(weights="2")}, {"pgd": attack()})
    (res / "LEADERBOARD.md").write_text("previous leaderboard\n")
    damage(folder)
    result = invoke(res)
    assert result.exit_code == 1, result.output
    flat = squeeze(result.output)
    assert squeeze(message) in flat and "rerunthesuite" in flat and "Traceback" not in result.output
    assert str(folder) in flat  # names the folder or file
    assert (res / "LEADERBOARD.md").read_text() == "previous leaderboard\n"
    assert not (res / "LEADERBOARD.json").exists() and not (res / "LEADERBOARD.csv").exists()
    assert not any(p.name.startswith(".leaderboard") for p in res.iterdir())


def test_a_failing_figure_writes_nothing(tmp_path, monkeypatch):
    import attractor_bench.plots as plots

    def broken(series, path, title, *a, **k):
        Path(path).write_bytes(b"half")
        raise RuntimeError("figure failed")

    monkeypatch.setattr(plots, "worst_case_vs_eps", broken)
    res = tmp_path / "results"
    write_run(res, "s", {"m": model(weights="1", wc={0.1: (0.5, 0.4, 10, 1)})}, {"pgd": attack()})
    result = invoke(res)
    assert result.exit_code != 0 and isinstance(result.exception, RuntimeError)
    _nothing_written(res)


COMMITTED = [REPO / "results" / s for s in ("mnist_adaptive", "mnist_fgsm")]


@pytest.mark.skipif(not all((f / "results.csv").is_file() for f in COMMITTED), reason="committed results not in this checkout")
def test_committed_results(tmp_path, monkeypatch):
    res = tmp_path / "results"
    for f in COMMITTED:
        shutil.copytree(f, res / f.name)
    shutil.copytree(REPO / "suites", tmp_path / "suites")  # old runs: attacks come from the suite file
    monkeypatch.chdir(tmp_path)
    doc = board_json(res)
    assert [r["model"] for r in doc["rows"]] == [
        "attractor (mnist_adaptive)", "attractor_full (mnist_adaptive)", "baseline (mnist_adaptive)",
        "baseline (mnist_fgsm)", "attractor_full (mnist_fgsm)", "attractor (mnist_fgsm)"]
    full = row(doc, "attractor_full (mnist_adaptive)")
    assert full["defence"] == "attractor" and full["randomized"] is False and full["unreliable"] is False
    wc = full["numbers"]["worst_case_linf_0.1"]
    assert (wc["value"], wc["n"], wc["n_attacks"], wc["suite"], wc["commit"]) == (0.16, 25, 12, "mnist_adaptive", "ea995c1")
    assert len(wc["attacks"]) == 12 and {"square", "pgd_bpda", "rejection_aware"} <= set(wc["attacks"])
    assert "pgd_l2" not in wc["attacks"]
    assert full["numbers"]["end_to_end_linf_0.1"]["value"] == 0.12
    att = row(doc, "attractor (mnist_adaptive)")["numbers"]["ood_auroc_fashion_mnist_linf_0.1"]
    assert (att["value"], att["attack"]) == (0.739321, "rejection_aware")
    old = row(doc, "attractor (mnist_fgsm)")
    assert old["numbers"]["clean_accuracy"]["value"] == pytest.approx(0.8385)
    assert old["numbers"]["worst_case_linf_0.3"]["value"] is None and old["unreliable"] is None
    assert "suites/mnist_adaptive.yaml` as it is now" in doc["runs"]["mnist_adaptive"]["attacks_from"]

    # without the suite files the attacks of these old runs are not recorded: said, not guessed
    shutil.rmtree(tmp_path / "suites")
    doc = board_json(res)
    wc = row(doc, "attractor_full (mnist_adaptive)")["numbers"]["worst_case_linf_0.1"]
    assert wc["value"] == 0.16 and wc["attacks"] is None and "not recorded" in wc["note"]
    att = row(doc, "attractor (mnist_adaptive)")["numbers"]["ood_auroc_fashion_mnist_linf_0.1"]
    assert att["value"] is None and "not recorded" in att["note"]
    md = (res / "LEADERBOARD.md").read_text()
    assert "12 attacks, labels not recorded" in md and "not recorded: run.json has no 'attacks'" in md
