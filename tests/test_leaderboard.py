"""`summary.py` (a run's results as data) and `attractor-bench leaderboard` (ranking the runs of a
results folder from their summary.json), on small synthetic runs, and on the baseline runs where present."""

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from typer.testing import CliRunner

from attractor_bench.cli import app
from attractor_bench import columns
from attractor_bench.errors import AttractorBenchError
from attractor_bench.leaderboard import UNRELIABLE
from attractor_bench.page import write_leaderboard
from attractor_bench.components import current
from attractor_bench.provenance import VERSIONED
from attractor_bench.result import RunResult
from attractor_bench.flags import ModelFlags, RobustFlags, decode_samples
from attractor_bench.summary import dumps, summarize, write_summary

runner = CliRunner()
OUTPUTS = ("LEADERBOARD.md", "LEADERBOARD.csv", "LEADERBOARD.json", "leaderboard.html", "leaderboard_worst_case.png")
FLAGS = ("flag_no_collapse_at_eps_0.5", "flag_zero_gradients")


def attack(norm="linf", eps=(0.1, 0.3), n=None, models=None, ood=False):
    return {"name": "x", "norm": norm, "kind": "gradient", "target": "pipeline", "n": n, "eps": list(eps), "ood": ood,
            "models": models}


def model(clean=0.9, wc=None, auroc=None, flags=None, reasons=(), weights="w", threshold=0.8, randomized=False,
          defence="attractor", clean_n=None, params=None, verdict=None, preset="p"):
    """wc: {eps or (norm, eps, all_images): (accuracy, e2e, n[, n_attacks])}; auroc: {dataset: {label: {eps: value}}}
    ('none' is clean); flags: {flag: 0/1} (None: not checked); verdict: the run's `indicators` verdict
    ({"by_eps": [...], "findings": [...]}; None: a run without indicators)."""
    return dict(clean=clean, wc=wc or {}, auroc=auroc or {}, flags=flags, reasons=list(reasons), clean_n=clean_n, verdict=verdict,
                info={"preset": preset, "weights": weights, "randomized": randomized, "threshold": threshold,
                      "defence": {"name": defence, "origin": "built-in", "params": {}, "weights": []},
                      **({"params": params} if params is not None else {})})


def _model_rows(name: str, m: dict, attacks: dict) -> list[tuple]:
    rows = [("none", 0.0, "mnist", "accuracy", m["clean"], "cell"),
            ("none", 0.0, "mnist", "end_to_end_accuracy", m["clean"] - 0.05, "cell")]
    rows += [("none", 0.0, "mnist", "n_samples", m["clean_n"], "cell")] if m["clean_n"] else []
    for k, (acc, e2e, n, *count) in m["wc"].items():
        norm, eps, full = k if isinstance(k, tuple) else ("linf", k, False)
        count = count[0] if count else sum(a["norm"] == norm and eps in a["eps"] and name in a["models"] for a in attacks.values())
        label = f"worst_case_{norm}" + ("_all_images" if full else "")
        rows += [(label, eps, "mnist", k2, v, "worst_case") for k2, v in
                 (("accuracy", acc), ("end_to_end_accuracy", e2e), ("accepted_wrong", 0.1), ("n_samples", n), ("n_attacks", count))]
    for ds, by_label in m["auroc"].items():
        rows += [(label, eps, ds, "ood_AUROC", float("nan") if v is None else v, "cell")
                 for label, by_eps in by_label.items() for eps, v in by_eps.items()]
    if m["flags"] is not None:
        rows += [("sanity", 0.0, "mnist", f, v, "sanity") for f, v in m["flags"].items()]
        rows.append(("sanity", 0.0, "mnist", "potentially_unreliable", int(any(m["flags"].values())), "sanity"))
    return [(name, *r) for r in rows]


def result(suite: str, models: dict, attacks: dict, date="2026-12-01 10:00 UTC", commit="abc1234", n_test=100,
           subsets=None) -> RunResult:
    attacks = {k: {**a, "models": a["models"] or list(models)} for k, a in attacks.items()}
    rows = [r for name, m in models.items() for r in _model_rows(name, m, attacks)]
    table = pd.DataFrame(rows, columns=["model", "attack", "eps", "dataset", "metric", "value", "kind"])
    meta = {"date": date, "commit": commit, "command": f"attractor-bench run suites/{suite}.yaml", "attacks": attacks,
            "components": current(),
            "subsets": subsets or {}, "models": {n: m["info"] for n, m in models.items()},
            "flags": {n: m["reasons"] for n, m in models.items()}, "n_images": {"mnist": n_test},
            "verdict": {n: m["verdict"] for n, m in models.items() if m["verdict"] is not None}}
    flags = {name: _flags(name, m, attacks, n_test) for name, m in models.items()}
    return RunResult(SimpleNamespace(name=suite, data=SimpleNamespace(n_test=n_test)), table, meta, robust_flags=flags)


def _first(share: float, n: int) -> np.ndarray:
    """n flags, the first share * n of them set (a whole number: the record holds images)."""
    assert abs(share * n - round(share * n)) < 1e-6, f"{share} of {n} images is not a whole number of images"
    return np.arange(n) < round(share * n)


def _flags(name: str, m: dict, attacks: dict, n_test: int) -> ModelFlags:
    """The model's robust-flags record with the accuracies of `m` (the first images robust); each worst
    case over the attacks of its norm and eps that ran on the model (those on every image for an
    all-images repeat), the first n_attacks of them where given."""
    idx = np.arange(n_test)
    clean = RobustFlags("none", 0.0, idx, _first(m["clean"], n_test), _first(m["clean"] - 0.05, n_test), np.zeros(n_test, bool))
    points = []
    for k, (acc, e2e, n, *count) in m["wc"].items():
        norm, eps, full = k if isinstance(k, tuple) else ("linf", k, False)
        over = [label for label, a in attacks.items() if a["norm"] == norm and eps in a["eps"] and name in a["models"]
                and not (full and a["n"] is not None)]
        points.append(RobustFlags(norm, eps, np.arange(n), _first(acc, n), _first(e2e, n), np.zeros(n, bool),
                                  tuple(over[: count[0] if count else None]), full))
    return ModelFlags(clean, points)


def write_run(root: Path, *args, samples=None, **kwargs) -> Path:
    """A run's results.csv and summary.json. Its records keep per-image outcomes only where `samples`
    gives them ({model: {("none", 0.0): (idx, correct)}}, the clean images'), as a record of older code
    has none, so that rows are compared by their counts unless a test gives them."""
    r = result(*args, **kwargs)
    samples = samples or {}
    for m, per in samples.items():
        idx, correct = per[("none", 0.0)]
        r.robust_flags[m].clean = RobustFlags("none", 0.0, idx, correct, correct, np.zeros(len(idx), bool))
    folder = root / r.suite.name
    folder.mkdir(parents=True)
    r.table.to_csv(folder / "results.csv", index=False)
    doc = json.loads(write_summary(r, folder).read_text())
    for m in doc["models"]:
        m["clean"]["samples"] = m["clean"]["samples"] if m["name"] in samples else None
        for w in m["worst_case"]:
            w["samples"] = None
    (folder / "summary.json").write_text(dumps(doc))
    return folder


def squeeze(text: str) -> str:
    """Output without whitespace: the console wraps long lines, paths included."""
    return "".join(text.split())


def invoke(results: Path):
    return runner.invoke(app, ["leaderboard", "--results-dir", str(results), "--all-runs"])  # synthetic runs: no protocol


def board_json(results: Path) -> dict:
    out = invoke(results)
    assert out.exit_code == 0, out.output
    return json.loads((results / "LEADERBOARD.json").read_text())


def row(doc: dict, name: str) -> dict:
    (r,) = [r for r in doc["rows"] if r["model"] == name]
    return r


def md_cells(md: str, name: str) -> list[str]:
    line = next(line for line in md.splitlines() if f"| `{name}` |" in line)
    return [c.strip() for c in line.split("|")[1:-1]]


def exact(acc: float, n: int) -> list[float]:
    ci = binomtest(round(acc * n), n).proportion_ci(confidence_level=0.95, method="exact")
    return [ci.low, ci.high]


# --------------------------------------------------------------------------- summary.py

SUBSET_ATTACKS = {"fgsm": attack(ood=True), "square": attack(eps=(0.1,), n=50),
                  "rejection_aware": attack(eps=(0.1,), models=["att"], ood=True), "deepfool": attack(norm="l2", eps=(1.0,), n=50)}


def subset_run(**kwargs) -> RunResult:
    """Two models, one with a rejector, attacks on all images and on a subset of 50 (so an all-images repeat)."""
    att = model(wc={("l2", 1.0, False): (0.2, 0.1, 50, 1), 0.1: (0.46, 0.40, 50, 3), ("linf", 0.1, True): (0.52, 0.45, 100, 2),
                    0.3: (0.1, 0.05, 100, 1)},
                auroc={"fashion_mnist": {"none": {0.0: 0.95}, "fgsm": {0.1: 0.90, 0.3: 0.5}, "rejection_aware": {0.1: 0.74}}},
                flags={FLAGS[0]: 0, FLAGS[1]: 1}, reasons=["zero gradients"], weights="w1")
    plain = model(clean=0.8, threshold=None, defence="none", weights="w2",
                  wc={0.1: (0.3, 0.3, 50, 2), ("linf", 0.1, True): (0.32, 0.32, 100, 1), 0.3: (0.0, 0.0, 100, 1)},
                  auroc={"fashion_mnist": {"none": {0.0: None}, "fgsm": {0.1: None}}})
    return result("sub", {"att": att, "plain": plain}, SUBSET_ATTACKS,
                  subsets={"square": {"mnist": 50}, "deepfool": {"mnist": 50}}, **kwargs)


def test_summary_worst_cases_carry_their_attacks_n_and_exact_interval():
    doc = summarize(subset_run())
    assert (doc["format"], doc["suite"], doc["commit"], doc["date"]) == (3, "sub", "abc1234", "2026-12-01 10:00 UTC")
    att, plain = doc["models"]
    assert att["name"] == "att" and att["has_rejector"] and not plain["has_rejector"]
    assert att["identity"] == {"weights": "w1", "threshold": 0.8, "params": None,
                               "defence": {"name": "attractor", "origin": "built-in", "params": {}, "weights": []}}
    got = [(w["norm"], w["eps"], w["all_images"], w["n"], w["attacks"]) for w in att["worst_case"]]
    assert got == [("l2", 1.0, False, 50, ["deepfool"]), ("linf", 0.1, False, 50, ["fgsm", "square", "rejection_aware"]),
                   ("linf", 0.1, True, 100, ["fgsm", "rejection_aware"]), ("linf", 0.3, False, 100, ["fgsm"])]
    for w in att["worst_case"] + plain["worst_case"]:
        assert w["interval"] == pytest.approx(exact(w["accuracy"], w["n"]), abs=1e-12)
        assert w["interval"][0] <= w["accuracy"] <= w["interval"][1]
    assert att["worst_case"][1]["end_to_end_accuracy"] == 0.40
    # the rejection-aware attack ran on `att` only
    assert [w["attacks"] for w in plain["worst_case"]] == [["fgsm", "square"], ["fgsm"], ["fgsm"]]
    assert all(w["end_to_end_accuracy"] is None for w in plain["worst_case"])  # no rejector
    assert {k: v for k, v in att["clean"].items() if k != "samples"} == {
        "accuracy": 0.9, "end_to_end_accuracy": pytest.approx(0.85), "n": 100, "interval": pytest.approx(exact(0.9, 100), abs=1e-12)}
    idx, correct = decode_samples(att["clean"]["samples"])
    assert list(idx) == list(range(100)) and list(correct) == [i < 90 for i in range(100)]
    idx, robust = decode_samples(att["worst_case"][1]["samples"])  # the flags of the record, image by image
    assert len(idx) == 50 and robust.sum() == 23 and att["worst_case"][2]["samples"] is None  # none for a repeat
    assert plain["clean"]["end_to_end_accuracy"] is None
    # a run without indicators: the sanity flags alone, no verdict per eps
    assert att["verdict"] == {"potentially_unreliable": True, "flags": {FLAGS[0]: 0, FLAGS[1]: 1}, "reasons": ["zero gradients"],
                              "by_eps": []}
    assert plain["verdict"] == {"potentially_unreliable": None, "flags": {}, "reasons": [], "by_eps": []}


def test_summary_ood_takes_the_lowest_auroc_per_norm_and_eps():
    att, plain = summarize(subset_run())["models"]
    assert att["ood"] == [{"dataset": "fashion_mnist", "auroc_clean": 0.95, "attacked": [
        {"norm": "linf", "eps": 0.1, "auroc": 0.74, "attack": "rejection_aware", "attacks": ["fgsm", "rejection_aware"]},
        {"norm": "linf", "eps": 0.3, "auroc": 0.5, "attack": "fgsm", "attacks": ["fgsm"]}]}]
    assert plain["ood"] == [{"dataset": "fashion_mnist", "auroc_clean": None,
                             "attacked": [{"norm": "linf", "eps": 0.1, "auroc": None, "attack": None, "attacks": ["fgsm"]}]}]


@pytest.mark.parametrize("n_test", [100, 10_000])
def test_summary_clean_n_is_the_runs_mnist_images(n_test):
    r = result("s", {"m": model()}, {}, n_test=n_test)
    assert summarize(r)["models"][0]["clean"]["n"] == n_test


def test_summary_reads_the_worst_case_from_the_robust_flags_alone():
    """The worst case comes from the model's robust-flags record (robustness.worst_case computed it once),
    not from the table's rows or the attacks' metadata: a table that disagrees changes nothing, and a
    model without a record is refused."""
    r = result("s", {"m": model(wc={0.1: (0.5, 0.4, 100)})}, {"fgsm": attack(), "pgd": attack()})
    before = summarize(r)["models"][0]["worst_case"]
    assert [(w["accuracy"], w["attacks"]) for w in before] == [(0.5, ["fgsm", "pgd"])]
    r.table.loc[r.table.kind == "worst_case", "value"] = 0.123
    assert summarize(r)["models"][0]["worst_case"] == before
    r.robust_flags = {}
    with pytest.raises(AttractorBenchError, match=r"no robust flags \(robust_flags.json\) for m"):
        summarize(r)
    with pytest.raises(AttractorBenchError, match="no `kind` column"):
        summarize(RunResult(r.suite, r.table.drop(columns="kind"), r.meta))


def test_write_summary_is_rounded_json_without_nan_and_byte_stable(tmp_path):
    r = subset_run()
    path = write_summary(r, tmp_path)
    text = path.read_text()
    assert "NaN" not in text and '"auroc_clean": null' in text
    w = json.loads(text)["models"][0]["worst_case"][1]
    assert w["interval"] == [round(x, 6) for x in exact(0.46, 50)]
    write_summary(subset_run(), tmp_path)
    assert path.read_text() == text and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_merge_takes_each_number_from_the_run_with_most_attacks(tmp_path):
    res = tmp_path / "results"
    write_run(res, "suite_a", {"net": model(clean=0.91, weights="w1", wc={0.1: (0.50, 0.45, 100), 0.3: (0.30, 0.25, 100)})},
              {"fgsm": attack(), "pgd": attack(eps=(0.1,)), "square": attack(eps=(0.1,))}, commit="aaaaaaa")
    write_run(res, "suite_b", {"net": model(clean=0.92, weights="w1", wc={0.1: (0.40, 0.34, 50), 0.3: (0.20, 0.16, 50)})},
              {"pgd": attack(), "apgd": attack()}, date="2026-12-02 10:00 UTC", commit="bbbbbbb")
    doc = board_json(res)
    assert [r["model"] for r in doc["rows"]] == ["net"]  # one model: the same name, weights, defence and threshold
    nums = doc["rows"][0]["numbers"]
    # 0.1: suite_a ran 3 attacks there (more than suite_b's 2), though suite_b is later
    assert nums["worst_case_0.1"] == {"value": 0.5, "suite": "suite_a", "commit": "aaaaaaa", "date": "2026-12-01 10:00 UTC",
                                      "n": 100, "attacks": ["fgsm", "pgd", "square"],
                                      "ci_low": round(exact(0.5, 100)[0], 6), "ci_high": round(exact(0.5, 100)[1], 6)}
    assert (nums["e2e_0.1"]["value"], nums["e2e_0.1"]["suite"]) == (0.45, "suite_a")
    assert (nums["worst_case_0.3"]["value"], nums["worst_case_0.3"]["suite"]) == (0.2, "suite_b")  # 2 attacks beat 1
    assert nums["worst_case_0.3"]["attacks"] == ["pgd", "apgd"] and nums["e2e_0.3"]["value"] == 0.16
    assert (nums["clean"]["value"], nums["clean"]["suite"]) == (0.92, "suite_b")  # no attacks, same n: the later run
    assert doc["rows"][0]["suites"] == ["suite_a", "suite_b"]
    with open(res / "LEADERBOARD.csv", newline="") as f:
        (line,) = list(csv.DictReader(f))
    assert (line["worst_case_linf_0.1"], line["worst_case_linf_0.1_n"], line["worst_case_linf_0.3"]) == ("0.500000", "100", "0.200000")
    assert line["suites"] == "suite_a;suite_b"
    assert doc["runs"]["suite_b"] == {"command": "attractor-bench run suites/suite_b.yaml", "commit": "bbbbbbb",
                                      "date": "2026-12-02 10:00 UTC"}


def test_ties_go_to_the_larger_n_then_the_later_date_then_the_first_suite(tmp_path):
    res = tmp_path / "results"
    a = {"pgd": attack()}
    write_run(res, "zeta", {"net": model(clean=0.80, wc={0.1: (0.3, 0.2, 10)})}, a)
    write_run(res, "alpha", {"net": model(clean=0.70, wc={0.1: (0.1, 0.0, 10)})}, a)
    write_run(res, "mid", {"net": model(clean=0.60, wc={0.3: (0.2, 0.1, 20)})}, a, date="2026-11-30 10:00 UTC", n_test=200)
    write_run(res, "low", {"net": model(clean=0.50, wc={0.3: (0.4, 0.3, 10)})}, a, date="2026-12-05 10:00 UTC")
    nums = board_json(res)["rows"][0]["numbers"]
    assert (nums["clean"]["suite"], nums["clean"]["n"]) == ("mid", 200)  # 200 clean images beat 100, though earlier
    assert (nums["worst_case_0.3"]["suite"], nums["worst_case_0.3"]["n"]) == ("mid", 20)
    assert nums["worst_case_0.1"]["suite"] == "alpha"  # same attacks, n and date: the first suite name
    summary = res / "zeta" / "summary.json"
    summary.write_text(summary.read_text().replace("2026-12-01", "2026-12-03"))
    assert board_json(res)["rows"][0]["numbers"]["worst_case_0.1"] | {"ci_low": None, "ci_high": None} == {
        "value": 0.3, "suite": "zeta", "commit": "abc1234", "date": "2026-12-03 10:00 UTC", "n": 10, "attacks": ["pgd"],
        "ci_low": None, "ci_high": None}


def test_one_row_per_model_name_the_newest_training_ranked_the_others_superseded(tmp_path):
    res = tmp_path / "results"
    a = {"pgd": attack()}
    day = "2026-12-01 {:02d}:00 UTC".format
    write_run(res, "s1", {"net": model(weights="w1"), "solo": model(weights="w3")}, a, date=day(10))
    write_run(res, "s2", {"net": model(weights="w2")}, a, date=day(11))  # another training, newer than s1 ...
    write_run(res, "s3", {"net": model(weights="w1")}, a, date=day(12))  # ... but s1's weights are in the newest run
    write_run(res, "s4", {"net": model(weights="w1", defence="none", threshold=None)}, a, date=day(9))  # another defence
    write_run(res, "s5", {"net": model(weights="w1", threshold=0.9)}, a, date=day(8))  # another threshold
    write_run(res, "s6", {"net": model(weights="w1", params={"eot_samples": 2})}, a, date=day(7))  # other evaluation parameters
    doc = board_json(res)
    assert sorted(r["model"] for r in doc["rows"]) == ["net", "solo"]
    assert row(doc, "net")["suites"] == ["s1", "s3"] and row(doc, "net")["weights"] == "w1"
    assert [(m["model"], m["suites"]) for m in doc["superseded"]] == [("net", ["s2"]), ("net", ["s4"]), ("net", ["s5"]),
                                                                       ("net", ["s6"])]
    assert all("`s1`, `s3`" in m["why"] for m in doc["superseded"])
    md = (res / "LEADERBOARD.md").read_text()
    assert "| `net` |" in md and "(s2)" not in md.split("## Superseded")[0]
    assert "- `net` in `s2` (2026-12-01 11:00 UTC): another `net`" in md.split("## Superseded models (not ranked)")[1]


def test_sort_by_worst_case_then_clean_with_missing_values_last(tmp_path):
    res = tmp_path / "results"
    models = {
        "no_wc": model(clean=0.99, weights="1"),
        "only_01": model(clean=0.95, weights="2", wc={0.1: (0.9, 0.8, 10)}),
        "low_03": model(clean=0.90, weights="3", wc={0.1: (0.5, 0.4, 10), 0.3: (0.1, 0.1, 10)}),
        "high_03": model(clean=0.80, weights="4", wc={0.1: (0.4, 0.3, 10), 0.3: (0.2, 0.1, 10)}),
        "tie_03_b": model(clean=0.85, weights="5", wc={0.1: (0.6, 0.3, 10), 0.3: (0.1, 0.0, 10)}),
        "zero_03": model(clean=0.85, weights="8", wc={0.1: (0.0, 0.0, 10), 0.3: (0.0, 0.0, 10)}),
        "clean_tie_b": model(clean=0.97, weights="6"),
        "clean_tie_a": model(clean=0.97, weights="7"),
    }
    write_run(res, "s", models, {"pgd": attack()})
    doc = board_json(res)
    assert [r["model"] for r in doc["rows"]] == [
        "high_03", "tie_03_b", "low_03", "zero_03", "only_01", "no_wc", "clean_tie_a", "clean_tie_b"]  # 0 before missing
    assert [r["position"] for r in doc["rows"]] == list(range(1, 9))
    # On 10 images (100 clean) Fisher's exact test separates only large gaps: the first three share rank 1; zero_03
    # (0% / 5%) is beaten at eps 0.1 by tie_03_b (60%) and low_03 (50%); a missing worst case loses to a measured one.
    assert [r["rank"] for r in doc["rows"]] == [1, 1, 1, 3, 5, 6, 6, 6]
    assert doc["rows"][4]["numbers"]["worst_case_0.3"] == {"value": None}
    md = (res / "LEADERBOARD.md").read_text()
    assert md.index("`high_03`") < md.index("`tie_03_b`") < md.index("`only_01`") < md.index("`no_wc`")


def test_end_to_end_only_for_models_that_reject(tmp_path):
    res = tmp_path / "results"
    write_run(res, "s", {"rejects": model(weights="1", wc={0.1: (0.5, 0.4, 10), 0.3: (0.3, 0.2, 10)}),
                         "plain": model(weights="2", threshold=None, defence="none", wc={0.1: (0.6, 0.5, 10), 0.3: (0.4, 0.3, 10)})},
              {"pgd": attack()})
    doc = board_json(res)
    assert row(doc, "rejects")["numbers"]["e2e_0.3"]["value"] == 0.2
    plain = row(doc, "plain")["numbers"]
    assert plain["e2e_0.1"] == {"value": None} and plain["worst_case_0.3"]["value"] == 0.4
    with open(res / "LEADERBOARD.csv", newline="") as f:
        lines = {r["model"]: r for r in csv.DictReader(f)}
    assert lines["plain"]["e2e_linf_0.3"] == "" and lines["plain"]["threshold"] == ""
    assert lines["rejects"]["e2e_linf_0.3"] == "0.200000"
    md = (res / "LEADERBOARD.md").read_text()
    cell = lambda acc: "{:.2f} [{:.2f}, {:.2f}]".format(*(100 * x for x in [acc, *exact(acc, 10)]))  # noqa: E731
    clean = "{:.2f} [{:.2f}, {:.2f}]".format(*(100 * x for x in [0.9, *exact(0.9, 100)]))
    assert md_cells(md, "plain") == ["1", "`plain`", "none", clean, cell(0.6), cell(0.4), "—", "—", "not checked"]
    assert md_cells(md, "rejects")[6] == cell(0.4)  # e2e at 0.1; at 0.3 in the cards, the CSV and the JSON
    assert row(doc, "rejects")["numbers"]["e2e_0.3"]["ci_low"] == pytest.approx(exact(0.2, 10)[0], abs=1e-6)
    assert float(lines["rejects"]["e2e_linf_0.3_ci_high"]) == pytest.approx(exact(0.2, 10)[1], abs=1e-6)
    assert row(doc, "rejects")["numbers"]["worst_case_0.3"]["ci_high"] == pytest.approx(exact(0.3, 10)[1], abs=1e-6)


def test_attacked_auroc_is_the_lowest_linf_one_at_eps_01_and_names_its_attack(tmp_path):
    res = tmp_path / "results"
    attacks = {"fgsm": attack(ood=True), "rejection_aware": attack(ood=True), "pgd_l2": attack(norm="l2", eps=(0.1, 1.0), ood=True)}
    auroc = {"fashion_mnist": {"none": {0.0: 0.95}, "fgsm": {0.1: 0.90, 0.3: 0.50}, "rejection_aware": {0.1: 0.74, 0.3: 0.40},
                               "pgd_l2": {0.1: 0.30}},  # L2 and eps 0.3 do not count
             "cifar10_bw": {"none": {0.0: 0.99}, "fgsm": {0.1: 0.80}, "rejection_aware": {0.1: 0.85}}}
    write_run(res, "s", {"m": model(weights="1", auroc=auroc),
                         "no_rejector": model(weights="2", threshold=None, auroc={"fashion_mnist": {"none": {0.0: None},
                                                                                                    "fgsm": {0.1: None}}})}, attacks)
    doc = board_json(res)
    nums = row(doc, "m")["numbers"]
    assert nums["fashion_mnist_clean"]["value"] == 0.95
    att = nums["fashion_mnist_attacked"]
    assert (att["value"], att["attack"], att["attacks"]) == (0.74, "rejection_aware", ["fgsm", "rejection_aware"])
    assert (nums["cifar10_bw_attacked"]["value"], nums["cifar10_bw_attacked"]["attack"]) == (0.8, "fgsm")
    none = row(doc, "no_rejector")["numbers"]
    assert none["fashion_mnist_clean"] == {"value": None} and none["fashion_mnist_attacked"] == {"value": None}
    md = (res / "LEADERBOARD.md").read_text()
    assert "| OOD robust AUROC |" in md and "OOD robust AUROC: the lowest over Fashion-MNIST" in md  # the OOD runs' column
    assert md_cells(md, "m")[7] == "—"  # no OOD run here: the table shows only the OOD runs' numbers
    with open(res / "LEADERBOARD.csv", newline="") as f:
        lines = {r["model"]: r for r in csv.DictReader(f)}
    assert lines["m"]["ood_auroc_fashion_mnist_linf_0.1_attack"] == "rejection_aware"
    assert lines["m"]["ood_auroc_fashion_mnist_linf_0.1"] == "0.740000"


def test_unreliable_flag_is_read_and_shown(tmp_path):
    res = tmp_path / "results"
    write_run(res, "s", {"bad": model(weights="1", flags={FLAGS[0]: 0, FLAGS[1]: 1}, reasons=["3% zero gradients"]),
                         "good": model(weights="2", flags={FLAGS[0]: 0, FLAGS[1]: 0}), "unchecked": model(weights="3")},
              {"pgd": attack()})
    doc = board_json(res)
    assert row(doc, "bad")["unreliable"] is True and row(doc, "bad")["indicators_raised"] == {"s": ["3% zero gradients"]}
    assert row(doc, "good")["unreliable"] is False and row(doc, "unchecked")["unreliable"] is None
    md = (res / "LEADERBOARD.md").read_text()
    assert md_cells(md, "bad")[8] == f"**{UNRELIABLE}**" and md_cells(md, "good")[8] == "reliable"
    assert md_cells(md, "unchecked")[8] == "not checked" and "- `bad` in `s`:\n  - 3% zero gradients" in md
    with open(res / "LEADERBOARD.csv", newline="") as f:
        assert {r["model"]: r["unreliable"] for r in csv.DictReader(f)} == {"bad": "yes", "good": "no", "unchecked": ""}


def _finding(name, eps, raised, samples=()):
    return {"name": name, "attack": "pgd", "norm": "linf", "eps": eps, "count": len(samples), "n": 16, "raised": raised,
            "samples": list(samples), "why": f"{name} here", "value": None}


def test_the_verdict_per_eps_is_shown_with_its_evidence(tmp_path):
    """A run with indicators: the verdict column names the eps where the run is potentially unreliable, and
    the evidence section lists each raised indicator with its images; a run whose indicators raised nothing
    is reliable although a finding was computed."""
    res = tmp_path / "results"
    bad = _finding("silent_success", 0.3, True, [4, 9])
    by_eps = [{"norm": "linf", "eps": 0.1, "potentially_unreliable": False, "robust_images": 30, "indicators": [], "note": ""},
              {"norm": "linf", "eps": 0.3, "potentially_unreliable": True, "robust_images": 5, "indicators": [bad], "note": ""}]
    ok = [{**e, "potentially_unreliable": False, "indicators": []} for e in by_eps]
    write_run(res, "s", {"bad": model(weights="1", flags={FLAGS[0]: 0}, verdict={"by_eps": by_eps, "findings": [bad]}),
                         "good": model(weights="2", flags={FLAGS[0]: 0},
                                       verdict={"by_eps": ok, "findings": [_finding("silent_success", 0.3, False)]})},
              {"pgd": attack()})
    doc = board_json(res)
    assert row(doc, "bad")["unreliable"] is True and row(doc, "bad")["unreliable_at"] == ["L-inf 0.3"]
    assert row(doc, "bad")["indicators_raised"] == {"s": ["silent_success (pgd, linf eps 0.3): silent_success here; "
                                                          "first images 4, 9"]}
    assert row(doc, "good")["unreliable"] is False and row(doc, "good")["unreliable_at"] == []
    md = (res / "LEADERBOARD.md").read_text()
    assert md_cells(md, "bad")[8] == f"**{UNRELIABLE} (L-inf 0.3)**" and md_cells(md, "good")[8] == "reliable"
    assert "## Reliability verdict: the evidence" in md
    assert "  - silent_success (pgd, linf eps 0.3): silent_success here; first images 4, 9" in md


def test_rerun_gives_byte_identical_files_and_leaves_no_temporary_files(tmp_path):
    res = tmp_path / "results"
    write_run(res, "s", {"a": model(weights="1", wc={0.05: (0.7, 0.6, 10), 0.1: (0.5, 0.4, 10), 0.3: (0.1, 0.1, 10)}),
                         "b": model(weights="2", wc={0.1: (0.3, 0.2, 10)})},
              {"pgd": attack(eps=(0.05, 0.1, 0.3)), "fgsm": attack(eps=(0.05, 0.1, 0.3))})
    first = invoke(res)
    assert first.exit_code == 0, first.output
    flat = squeeze(first.output)
    assert all(name in flat for name in OUTPUTS) and "Leaderboard" in flat and "50.00" in flat
    before = {n: (res / n).read_bytes() for n in OUTPUTS}
    assert before["leaderboard_worst_case.png"].startswith(b"\x89PNG")
    md = before["LEADERBOARD.md"].decode()
    assert "](leaderboard_worst_case.png)" in md and "attractor-bench leaderboard --results-dir results" in md
    assert "Clopper-Pearson" in md and "most attacks" in md
    second = invoke(res)
    assert second.exit_code == 0, second.output
    assert {n: (res / n).read_bytes() for n in OUTPUTS} == before
    assert sorted(p.name for p in res.iterdir()) == sorted([*OUTPUTS, "leaderboard_worst_case.svg", "s"])  # the SVG beside the PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # no temporary folder beside it either
    assert row(json.loads(before["LEADERBOARD.json"]), "a")["numbers"]["worst_case_0.3"]["value"] == 0.1


def test_folders_without_summary_are_listed_not_ranked(tmp_path):
    res = tmp_path / "results"
    write_run(res, "new", {"m": model()}, {"pgd": attack()})
    (res / "old").mkdir()
    (res / "old" / "results.csv").write_text("model,attack,eps,dataset,metric,value\n")
    (res / "not_a_run").mkdir()
    board, written = write_leaderboard(res)
    assert [r.display for r in board.rows] == ["m"] and board.pending == ["old"]
    assert written == [res / n for n in OUTPUTS[:4]]  # no worst case anywhere: no figure
    md = (res / "LEADERBOARD.md").read_text()
    assert "## Not on the leaderboard" in md and "- `old`: no summary.json: rerun its suite with this version." in md
    assert json.loads((res / "LEADERBOARD.json").read_text())["not_on_the_leaderboard"] == ["old"]


def _nothing_written(res: Path, before: set[str]) -> None:
    assert {p.name for p in res.iterdir()} == before
    assert not [p for p in res.parent.iterdir() if p.name.startswith(".")]


def test_missing_results_dir_is_a_usage_error(tmp_path):
    out = invoke(tmp_path / "nope")
    assert out.exit_code == 2, out.output
    flat = squeeze(out.output)
    assert "doesnotexist" in flat and "--results-dir" in flat and "Traceback" not in out.output
    assert not (tmp_path / "nope").exists()


def test_results_dir_without_summaries_is_a_usage_error(tmp_path):
    res = tmp_path / "results"
    (res / "old").mkdir(parents=True)
    (res / "old" / "results.csv").write_text("model,attack,eps,dataset,metric,value\n")
    out = invoke(res)
    assert out.exit_code == 2, out.output
    flat = squeeze(out.output)
    assert "no<suite>/summary.jsonunder" in flat and "attractor-benchrun" in flat and "Traceback" not in out.output
    _nothing_written(res, {"old"})


@pytest.mark.parametrize("damage, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"format": 4, "suite": "broken", "models": []}), "not a summary of format 3"),
    (json.dumps({"format": 3, "suite": "broken", "models": [{"name": "m"}]}), "not a summary of format 3"),
])
def test_a_broken_summary_is_an_error_and_nothing_is_written(tmp_path, damage, message):
    res = tmp_path / "results"
    write_run(res, "good", {"m": model(weights="1")}, {"pgd": attack()})
    folder = write_run(res, "broken", {"m": model(weights="2")}, {"pgd": attack()})
    (res / "LEADERBOARD.md").write_text("previous leaderboard\n")
    (folder / "summary.json").write_text(damage)
    out = invoke(res)
    assert out.exit_code == 1, out.output
    flat = squeeze(out.output)
    assert squeeze(message) in flat and "rerunitssuite" in flat and "Traceback" not in out.output
    assert squeeze(str(folder / "summary.json")) in flat  # names the file
    assert (res / "LEADERBOARD.md").read_text() == "previous leaderboard\n"
    _nothing_written(res, {"good", "broken", "LEADERBOARD.md"})


def test_a_failing_figure_writes_nothing(tmp_path, monkeypatch):
    import attractor_bench.plots as plots

    def broken(series, path, title, *a, **k):
        Path(path).write_bytes(b"half")
        raise RuntimeError("figure failed")

    monkeypatch.setattr(plots, "worst_case_vs_eps", broken)
    res = tmp_path / "results"
    write_run(res, "s", {"m": model(weights="1", wc={0.1: (0.5, 0.4, 10)})}, {"pgd": attack()})
    with pytest.raises(RuntimeError, match="figure failed"):
        write_leaderboard(res)
    _nothing_written(res, {"s"})


def _with_samples(folder: Path, per_model: dict) -> None:
    """Give the worst case at 0.3 of each model in `folder`'s summary per-sample outcomes (robust per image)."""
    from attractor_bench.summary import encode_samples
    path = folder / "summary.json"
    doc = json.loads(path.read_text())
    for m in doc["models"]:
        for w in m["worst_case"]:
            if w["eps"] == 0.3 and m["name"] in per_model:
                robust = np.array(per_model[m["name"]], bool)
                w["samples"] = encode_samples(len(robust), np.arange(len(robust)), robust)
    path.write_text(json.dumps(doc))


def test_paired_outcomes_separate_rows_that_counts_alone_cannot(tmp_path):
    """60% vs 50% on 100 images: Fisher's exact test on the counts does not separate them (p ~ 0.2), but
    if the second model's robust images are a subset of the first's, McNemar's exact test on the 10
    discordant images does (p = 2^-9)."""
    res = tmp_path / "results"
    folder = write_run(res, "s", {"a": model(weights="1", wc={0.3: (0.6, 0.6, 100)}),
                                  "b": model(weights="2", wc={0.3: (0.5, 0.5, 100)})}, {"pgd": attack()})
    assert [r["rank"] for r in board_json(res)["rows"]] == [1, 1]
    a = np.arange(100) < 60
    _with_samples(folder, {"a": a, "b": np.arange(100) < 50})
    assert [(r["model"], r["rank"]) for r in board_json(res)["rows"]] == [("a", 1), ("b", 2)]
    _with_samples(folder, {"a": a, "b": (np.arange(100) >= 35) & (np.arange(100) < 85)})  # 35 vs 25 discordant: p ~ 0.25
    assert [r["rank"] for r in board_json(res)["rows"]] == [1, 1]


def test_the_summary_keeps_clean_correctness_per_image():
    """Issue 38: summary.json keeps which clean images each model classifies correctly (as it keeps the
    worst case's robust images), so that clean accuracies can be compared image by image."""
    correct = np.arange(100) % 5 != 0
    r = result("s", {"a": model(clean=0.8), "b": model(clean=0.7, weights="2")}, {"pgd": attack()})
    r.robust_flags["a"].clean = RobustFlags.clean(np.arange(100), correct, np.ones(100, bool))
    a, b = summarize(r)["models"]
    idx, ok = decode_samples(a["clean"]["samples"])
    assert list(idx) == list(range(100)) and (ok == correct).all() and a["clean"]["accuracy"] == 0.8


def _clean_only(correct: dict) -> dict:
    """A run's per-image clean outcomes for models with no worst case: {model: {("none", 0.0): (idx, correct)}}."""
    return {m: {("none", 0.0): (np.arange(len(c)), np.asarray(c, bool))} for m, c in correct.items()}


def test_clean_accuracy_ranks_use_mcnemar_on_the_images_both_rows_share(tmp_path):
    """Issue 38: 60% vs 50% clean on 100 images, no worst case. Fisher's exact test on the counts does not
    separate them; with per-image clean outcomes where b's correct images are a subset of a's, McNemar's
    exact test on the 10 discordant images does (p = 2^-9). LEADERBOARD.json says which test ranked them."""
    res, a, b = tmp_path / "results", np.arange(100) < 60, np.arange(100) < 50
    models = {"a": model(clean=0.6, weights="1"), "b": model(clean=0.5, weights="2")}
    write_run(res, "s", models, {"pgd": attack()}, samples=_clean_only({"a": a, "b": b}))
    rows = board_json(res)["rows"]
    assert [(r["model"], r["rank"]) for r in rows] == [("a", 1), ("b", 2)]
    assert all(r["rank_tests"]["clean"] == ["McNemar"] for r in rows)
    # overlapping but different images: 35 vs 25 discordant, p ~ 0.25, not separated
    write_run(res, "t", {"a": model(clean=0.6, weights="3"), "b": model(clean=0.5, weights="4")}, {"pgd": attack()},
              samples=_clean_only({"a": a, "b": (np.arange(100) >= 35) & (np.arange(100) < 85)}), date="2026-12-02 10:00 UTC")
    assert [r["rank"] for r in board_json(res)["rows"]] == [1, 1]
    # a record without per-image outcomes: Fisher's exact test on the counts (not separated), and said so
    write_run(res, "u", {"a": model(clean=0.6, weights="5"), "b": model(clean=0.5, weights="6")}, {"pgd": attack()},
              samples=_clean_only({"a": a}), date="2026-12-03 10:00 UTC")
    rows = board_json(res)["rows"]
    assert [r["rank"] for r in rows] == [1, 1] and all(r["rank_tests"]["clean"] == ["Fisher"] for r in rows)


def test_runs_made_by_other_code_are_listed_as_stale_not_ranked(tmp_path):
    res = tmp_path / "results"
    write_run(res, "now", {"m": model(weights="1", wc={0.3: (0.5, 0.4, 10)})}, {"pgd": attack()})
    old = write_run(res, "before", {"m": model(weights="0", wc={0.3: (0.9, 0.8, 10)})}, {"pgd": attack()})
    doc = json.loads((old / "summary.json").read_text())
    del doc["components"]  # made before component versions, by code no recorded check covers
    (old / "summary.json").write_text(json.dumps({**doc, "code": "0" * 32}))
    older = write_run(res, "format1", {"m": model(weights="2")}, {"pgd": attack()})
    (older / "summary.json").write_text(json.dumps({**doc, "format": 1, "suite": "format1"}))
    board = board_json(res)
    assert [r["model"] for r in board["rows"]] == ["m"] and board["rows"][0]["suites"] == ["now"]
    assert set(board["stale"]) == {"before", "format1"} and "other code" in board["stale"]["before"]["why"]
    assert "format 1" in board["stale"]["format1"]["why"]
    md = (res / "LEADERBOARD.md").read_text()
    assert "## Stale results (not ranked)" in md and "`before`" in md.split("## Stale results")[1]


def _link(frm: str, to: str, ood=("o0", "o1")) -> dict:
    return {"code": {"from": frm, "to": to}, "ood": {"from": ood[0], "to": ood[1]}, "old_commit": "c" * 40,
            "command": "python scripts/same_numbers.py --old cccccccccc", "date": "2026-12-03", "checked": "tables identical"}


def _carried(links: list[tuple[str, str]]) -> str:
    return json.dumps({"components": current(), "checks": [_link(f, VERSIONED if t == "now" else t) for f, t in links]})


@pytest.mark.parametrize("links,is_current", [([("a" * 32, "b" * 32), ("b" * 32, "now")], True),  # a chain of two checks
                                              ([("now", "a" * 32)], False),  # a link the other way does not count
                                              ([("a" * 32, "c" * 32)], False),  # nor one to other code
                                              ([], False)])
def test_a_recorded_check_counts_an_earlier_codes_run_as_current(tmp_path, links, is_current):
    res = tmp_path / "results"
    write_run(res, "now_run", {"m": model(weights="1", wc={0.3: (0.5, 0.4, 10)})}, {"pgd": attack()})
    old = write_run(res, "before", {"n": model(weights="0", wc={0.3: (0.9, 0.8, 10)})}, {"pgd": attack()})
    doc = json.loads((old / "summary.json").read_text())
    del doc["components"]  # a run made before component versions: a code fingerprint instead
    (old / "summary.json").write_text(json.dumps({**doc, "code": "a" * 32}))
    (res / "CARRIED_OVER.json").write_text(_carried([(VERSIONED if f == "now" else f, t) for f, t in links]))
    board = board_json(res)
    assert ("before" in board["runs"]) is is_current and ("before" in board.get("stale", {})) is not is_current
    assert sorted(r["model"] for r in board["rows"]) == (["m", "n"] if is_current else ["m"])
    md = (res / "LEADERBOARD.md").read_text()
    if is_current:
        chain = board["runs"]["before"]["current_by"]  # every check of the chain, oldest first
        assert [link["code"]["from"] for link in chain] == [f for f, _ in links]
        assert "made by earlier code (fingerprint `aaaaaaaaaaaa`), current by the check" in md
        check = ("Check of 2026-12-03: `python scripts/same_numbers.py --old cccccccccc` (earlier commit `cccccccccc`): "
                 "tables identical (results/CARRIED_OVER.json).")
        assert md.split("## Runs")[1].count(check) == len(links)
    else:
        assert "current_by" not in board["runs"]["now_run"] and "made by earlier code" not in md


def test_a_broken_lineage_file_is_one_clear_error(tmp_path):
    res = tmp_path / "results"
    write_run(res, "now_run", {"m": model(weights="1", wc={0.3: (0.5, 0.4, 10)})}, {"pgd": attack()})
    (res / "CARRIED_OVER.json").write_text('{"components": {}, "checks": [{"code": "x"}]}')
    out = invoke(res)
    assert out.exit_code == 1 and "CARRIED_OVER.json: not an object with components and checks" in out.output
    link = _link("a" * 32, VERSIONED)
    del link["code"]["from"]  # a link from nowhere would join runs that recorded no code
    (res / "CARRIED_OVER.json").write_text(json.dumps({"components": {}, "checks": [link]}))
    out = invoke(res)
    assert (out.exit_code == 1 and "CARRIED_OVER.json: not an object with components and checks" in out.output
            and "Traceback" not in out.output)
    assert not (res / "LEADERBOARD.md").exists()


def test_the_reference_is_set_against_its_goal_with_its_intervals(tmp_path):
    res = tmp_path / "results"
    write_run(res, "sota", {"cnn_at": model(clean=0.984, clean_n=1000, threshold=None, defence="none",
                                            wc={0.1: (0.98, 0.98, 1000), 0.3: (0.865, 0.865, 1000)})},
              {"pgd": attack()}, n_test=1000)
    invoke(res)
    goal = (res / "LEADERBOARD.md").read_text().split("## The state-of-the-art reference against its goal")[1].split("##")[0]
    lo, hi = (100 * x for x in exact(0.865, 1000))
    assert f"keeps 86.50% [{lo:.2f}, {hi:.2f}] (n = 1000)" in goal and "falls short by 2.00 points" in goal
    assert f"upper end, {hi:.2f}%, is {'above' if hi >= 88.5 else 'below'} it" in goal
    clo, chi = (100 * x for x in exact(0.984, 1000))
    assert f"clean 98.40% (n = 1000), meeting the clean goal (95% interval [{clo:.2f}, {chi:.2f}]: around 98%)" in goal
    write_run(res, "none_here", {"mlp": model(weights="x")}, {"pgd": attack()})
    (res / "sota" / "summary.json").unlink()
    invoke(res)
    assert "Not measured: no run in this folder has `cnn_at`" in (res / "LEADERBOARD.md").read_text()


def write_ood_run(root: Path, suite: str, models: dict, code=None, date="2026-12-02 10:00 UTC") -> Path:
    """An OOD run's ood.json: models {name: (identity, {rejector: {dataset: (clean, robust)}}, best)}."""
    from attractor_bench.summary import dumps
    made_by = {"code": code} if code else {"components": current()}
    doc = {"kind": "ood", "format": 1, "suite": suite, "command": f"attractor-bench ood suites/{suite}.yaml", "commit": "def5678",
           "date": date, **made_by, "best_rejector": {m: v[2] for m, v in models.items()},
           "models": {m: {"identity": v[0]} for m, v in models.items()},
           "auroc": {"eps": 0.1, "attacks": ["pgd", "apgd", "square"],
                     "models": {m: {r: {d: {"clean": c, "robust": rb, "id": rb + 0.01, "ood": rb + 0.02, "threshold": 0.5}
                                        for d, (c, rb) in sets.items()} for r, sets in v[1].items()} for m, v in models.items()}}}
    folder = root / suite
    folder.mkdir(parents=True)
    (folder / "ood.json").write_text(dumps(doc))
    return folder


def test_ood_columns_come_from_the_ood_run_of_the_same_model(tmp_path):
    res = tmp_path / "results"
    write_run(res, "s", {"att": model(wc={0.1: (0.5, 0.4, 100)}, weights="1"), "mlp": model(weights="2", threshold=None,
                                                                                           defence="none")}, {"pgd": attack()})
    ident = json.loads((res / "s" / "summary.json").read_text())
    ids = {m["name"]: m["identity"] for m in ident["models"]}
    sets = {"fashion_mnist": (0.96, 0.40), "cifar10_bw": (0.99, 0.70), "uniform_noise": (1.0, 0.9), "smooth_noise": (1.0, 0.8)}
    other = {**ids["mlp"], "weights": "another training"}
    write_ood_run(res, "ood", {"att": (ids["att"], {"similarity": sets, "msp": sets}, "similarity"),
                               "mlp": (other, {"msp": sets}, "msp")})
    write_ood_run(res, "ood_old", {"att": (ids["att"], {"energy": sets}, "energy")}, code="0" * 32)
    doc = board_json(res)
    att, mlp = row(doc, "att")["numbers"], row(doc, "mlp")["numbers"]
    assert att["ood_fashion_mnist_robust"]["value"] == 0.40 and att["ood_fashion_mnist_robust"]["rejector"] == "similarity"
    assert att["ood_smooth_noise_clean"]["value"] == 1.0 and att["ood_fashion_mnist_robust"]["suite"] == "ood"
    assert mlp["ood_fashion_mnist_robust"] == {"value": None}  # another training: not beside this row
    assert doc["ood_other_trainings"] == [{"model": "mlp", "suite": "ood", "date": "2026-12-02 10:00 UTC"}]
    assert "ood_old" in doc["stale"]
    md = (res / "LEADERBOARD.md").read_text()
    cells = md_cells(md, "att")
    assert cells[7] == "40.00"  # the lowest robust AUROC over the sets, of the best rejector (similarity)
    assert md_cells(md, "mlp")[7] == "—"
    assert row(doc, "att")["numbers"]["ood_robust_lowest"] | {"n_id": None} == {
        **att["ood_fashion_mnist_robust"], "set": "fashion_mnist", "n_id": None}
    assert "## OOD runs of other trainings (not shown)" in md and "`ood_old`" in md
    with open(res / "LEADERBOARD.csv") as f:
        line = {r["model"]: r for r in csv.DictReader(f)}["att"]
    assert line["ood_rejector"] == "similarity" and line["ood_cifar10_bw_auroc_robust_linf_0.1"] == "0.700000"


def test_attractor_at_is_set_against_issue_19s_goals_with_the_distance_to_each(tmp_path):
    res = tmp_path / "results"
    auroc = {"fashion_mnist": {"none": {0.0: 0.99}, "fgsm": {0.1: 0.97}, "rejection_aware": {0.1: 0.96}},
             "cifar10_bw": {"none": {0.0: 0.99}, "fgsm": {0.1: 0.95}, "rejection_aware": {0.1: 0.90}}}
    write_run(res, "lb", {"pgd_at": model(clean=0.94, clean_n=1000, threshold=None, defence="none", weights="p",
                                          wc={0.1: (0.85, 0.85, 1000), 0.3: (0.376, 0.376, 1000)}),
                          "attractor_at": model(clean=0.9, clean_n=1000, weights="a", auroc=auroc, preset="attractor_at",
                                                wc={0.1: (0.80, 0.755, 1000), 0.3: (0.30, 0.10, 1000)})},
              {"fgsm": attack(ood=True), "rejection_aware": attack(ood=True)}, n_test=1000)
    doc = board_json(res)
    assert list(doc["attractor_at_goals"]) == ["attractor_at"]  # by preset: pgd_at has none
    goals = {g["goal"].split(" >= ")[0].split(" (")[0]: g for g in doc["attractor_at_goals"]["attractor_at"]}
    wc = goals["worst case L-inf 0.3"]
    assert wc["target"] == pytest.approx(37.6) and wc["short_by"] == pytest.approx(7.6) and wc["met"] is False
    assert wc["separated_from_reference"] == -1  # 300 against 376 of 1,000: Fisher's exact test separates them
    assert goals["clean accuracy"]["short_by"] == pytest.approx(8.0) and goals["clean accuracy"]["met"] is False
    e2e = goals["end to end"]
    assert e2e["value"] == pytest.approx(75.5) and e2e["short_by"] == pytest.approx(4.5)
    assert e2e["interval"] == pytest.approx(exact(0.755, 1000))
    fm, cifar = goals["OOD AUROC against Fashion-MNIST under the rejection-aware attack"], goals[
        "OOD AUROC against CIFAR-10-bw under the rejection-aware attack"]
    assert fm["value"] == pytest.approx(96.0) and fm["met"] is True and fm["short_by"] == 0 and fm["attack"] == "rejection_aware"
    assert cifar["value"] == pytest.approx(90.0) and cifar["short_by"] == pytest.approx(5.0) and cifar["met"] is False
    md = (res / "LEADERBOARD.md").read_text().split("## `attractor_at` against its goals (issue 19)")[1].split("\n## ")[0]
    assert "| missed by 7.60 points (worse at p < 0.05) |" in md and "| 96.00 | 95.00 | met |" in md
    assert "| missed by 4.50 points |" in md
    (res / "lb" / "summary.json").unlink()
    write_run(res, "other", {"mlp": model(weights="x")}, {"pgd": attack()})
    doc = board_json(res)
    assert doc["attractor_at_goals"] == {}
    assert "Not measured: no run in this folder has an `attractor_at` model" in (res / "LEADERBOARD.md").read_text()


def test_the_table_has_nine_columns_one_n_each_and_clean_on_the_worst_cases_images(tmp_path):
    """LEADERBOARD.md's table: at most 9 columns; clean from the run and images of the worst case (the
    ranked clean, on more images, stays in the JSON); a number on another n than its column's says it."""
    res = tmp_path / "results"
    write_run(res, "big", {"net": model(clean=0.95, weights="1")}, {"pgd": attack()}, n_test=1000)
    wc = {0.1: (0.5, 0.4, 100), 0.3: (0.2, 0.1, 100)}
    write_run(res, "small", {"net": model(clean=0.9, weights="1", wc=wc), "a": model(weights="2", wc=wc),
                             "b": model(weights="3", wc={**wc, 0.3: (0.1, 0.0, 50)})}, {"pgd": attack()})
    doc = board_json(res)
    nums = row(doc, "net")["numbers"]
    assert (nums["clean"]["value"], nums["clean"]["n"], nums["clean"]["suite"]) == (0.95, 1000, "big")  # the ranked clean
    assert (nums["clean_on_worst_case_images"]["value"], nums["clean_on_worst_case_images"]["suite"]) == (0.9, "small")
    md = (res / "LEADERBOARD.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| # |"))
    assert header.count("|") - 1 == 9
    assert md_cells(md, "net")[3] == "90.00 [{:.2f}, {:.2f}]".format(*(100 * x for x in exact(0.9, 100)))
    assert md_cells(md, "b")[5].endswith(" (n=50)") and not md_cells(md, "a")[5].endswith(")")
    assert "n = 100 test images behind every clean, worst-case and e2e number" in md


def test_rows_that_are_one_model_under_two_names_say_so(tmp_path):
    """Two names with the same weights, defence and threshold (a longer training that stopped on the first
    one's weights) are one model: a note under the table says so; other weights get no note."""
    wc = {0.1: (0.6, 0.5, 100)}
    write_run(tmp_path, "s", {"short": model(weights="aaaa", wc=wc, params={"max_epochs": 12}),
                              "long": model(weights="aaaa", wc=wc, params={"max_epochs": 30}),  # trained longer, same end
                              "other": model(weights="bbbb", wc=wc), "other_th": model(weights="bbbb", threshold=0.7, wc=wc)},
              {"pgd": attack(eps=(0.1,))})
    board, _ = write_leaderboard(tmp_path)
    notes = [n for n in columns.table(board)[2] if "one model" in n]
    assert len(notes) == 1 and "`short`" in notes[0] and "`long`" in notes[0] and "`other" not in notes[0]
    assert notes[0] in (tmp_path / "LEADERBOARD.md").read_text()
