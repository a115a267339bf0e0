"""The results README, from a synthetic run (no training): the paper comparison finds our
numbers by model preset and by the FGSM-on-network attack, whatever they are called."""

import pandas as pd
import yaml

from attractor_bench.config import load_suite
from attractor_bench.paper import EPS_TABLE
from attractor_bench.report import render_readme
from attractor_bench.result import RunResult


def test_paper_table_matches_by_preset_and_attack(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({
        "reference": "paper", "data": {"ood": ["fashion_mnist"]},
        "models": {"mine": {"preset": "attractor"}},
        "attacks": [{"name": "pgd", "eps": ["20/255"]}, {"name": "fgsm", "label": "my_fgsm", "eps": ["20/255"]}],
    }))
    s = load_suite(suite)
    rows = []
    for attack, eps, acc in [("none", 0.0, 0.9), ("my_fgsm", EPS_TABLE, 0.8), ("pgd", EPS_TABLE, 0.1)]:
        rows.append(dict(model="mine", attack=attack, eps=eps, dataset="mnist", metric="accuracy", value=acc, kind="cell"))
    table = pd.DataFrame(rows)
    meta = {"date": "today", "wall_seconds": 1.0, "versions": {}, "cell_seconds": [],
            "models": {"mine": {"preset": "attractor", "config": s.models[0].train.to_dict(), "threshold": 0.8,
                                "history": {}, "from_cache": True, "seconds_train_or_load": 0.0}}}
    text = render_readme(RunResult(s, table, meta), "cmd")
    assert "| mine | 0 (clean) | MNIST | accuracy | 88.73 | 90.00 | +1.27 |" in text
    assert "| mine | 20/255 | MNIST | accuracy | 87.13 | 80.00 | -7.13 |" in text  # from my_fgsm, not pgd


def test_full_data_attractor_goals_say_how_far_short(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({
        "reference": "paper", "data": {"ood": ["fashion_mnist"]},
        "models": {"paper": {"preset": "attractor"}, "full": {"preset": "attractor_full"}},
        "attacks": [{"name": "fgsm", "eps": ["20/255"]}],
    }))
    s = load_suite(suite)
    rows = [dict(model=m, attack=a, eps=e, dataset="mnist", metric=k, value=v, kind="cell")
            for m, a, e, k, v in [("full", "none", 0.0, "accuracy", 0.985), ("full", "none", 0.0, "accuracy_single_pass", 0.97),
                                  ("full", "fgsm", EPS_TABLE, "accuracy", 0.6125), ("paper", "fgsm", EPS_TABLE, "accuracy", 0.5)]]
    meta = {"date": "today", "wall_seconds": 1.0, "versions": {}, "cell_seconds": [],
            "models": {m.name: {"preset": m.preset, "config": m.train.to_dict(), "threshold": 0.8, "history": {},
                                "from_cache": True, "seconds_train_or_load": 0.0} for m in s.models}}
    text = render_readme(RunResult(s, pd.DataFrame(rows), meta), "cmd")
    assert "| full | 0 (clean) | MNIST | accuracy | >= 98 | 98.50 | met | 97.00 | 1.00 short | 88.73 | n/a |" in text
    assert "| full | 20/255 | MNIST | accuracy | >= 90 | 61.25 | 28.75 short | n/a | n/a | 87.13 | 50.00 |" in text


def test_run_json_writes_numpy_values_as_json_values_and_the_csv_keeps_counts_exact():
    import json
    from pathlib import Path

    import numpy as np

    from attractor_bench.report import _csv_number, _plain

    meta = {"raised": np.bool_(False), "count": np.int64(3), "share": np.float32(0.5), "path": Path("a/b")}
    # json's default=str wrote numpy's False as the string "False", which a reader takes for true
    assert json.loads(json.dumps(meta, default=_plain)) == {"raised": False, "count": 3, "share": 0.5, "path": "a/b"}
    table = pd.DataFrame({"value": [1_541_344.0, 0.98666666, 2.0**60, 12.5, float("nan")]})
    back = pd.read_csv(__import__("io").StringIO(table.to_csv(index=False, float_format=_csv_number)))
    assert back.value[0] == 1_541_344  # %.6g alone wrote 1.54134e+06
    assert back.value[1] == 0.986667 and back.value[2] == float("1.15292e+18") and back.value[3] == 12.5
    assert np.isnan(back.value[4])


def test_details_give_each_accuracy_its_interval_and_say_which_attacks_run_in_the_cascade(tmp_path):
    from scipy.stats import binomtest

    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({
        "worst_case": "cascade", "data": {"n_test": 100, "ood": []}, "models": {"mine": {"preset": "attractor"}},
        "attacks": [{"name": "fgsm", "eps": [0.1], "ood": False}, {"name": "pgd", "eps": [0.1], "ood": False, "full": True}],
    }))
    s = load_suite(suite)
    rows = [dict(model="mine", attack=a, eps=e, dataset="mnist", metric=k, value=v, kind="cell")
            for a, e, k, v in [("none", 0.0, "accuracy", 0.9), ("fgsm", 0.1, "accuracy", 0.5), ("fgsm", 0.1, "n_samples", 100),
                               ("fgsm", 0.1, "end_to_end_accuracy", 0.25), ("pgd", 0.1, "accuracy", 0.3)]]
    meta = {"date": "today", "wall_seconds": 1.0, "versions": {}, "cell_seconds": [], "n_images": {"mnist": 100},
            "models": {"mine": {"preset": "attractor", "config": s.models[0].train.to_dict(), "threshold": 0.8,
                                "history": {}, "from_cache": True, "seconds_train_or_load": 0.0}}}
    text = render_readme(RunResult(s, pd.DataFrame(rows), meta), "cmd")
    ci = lambda k: binomtest(k, 100).proportion_ci(method="exact")  # noqa: E731
    details = text.split("### MNIST test accuracy under `fgsm`")[1].split("###")[0]
    assert f"| 0.1 | 50.00 [{100 * ci(50).low:.2f}, {100 * ci(50).high:.2f}] |" in details
    assert f"25.00 [{100 * ci(25).low:.2f}, {100 * ci(25).high:.2f}]" in details  # end to end
    assert f"| 0 (clean) | 90.00 [{100 * ci(90).low:.2f}, {100 * ci(90).high:.2f}] |" in details  # clean, on the run's 100 images
    fgsm, pgd = (next(line for line in text.splitlines() if line.startswith(f"  - `{a}`:")) for a in ("fgsm", "pgd"))
    assert "worst-case cascade" in fgsm and "worst-case cascade" not in pgd  # pgd says full: true


def test_a_defence_is_described_by_itself_when_built_in_and_by_its_parameters_otherwise():
    """The run README's defence line: the built-in attractor and `none` describe themselves (defenses.DESCRIPTIONS);
    an outside defence, even one named `attractor`, is shown with its origin and parameters."""
    from attractor_bench.config import DefenceSpec
    from attractor_bench.report import _defence_text

    assert _defence_text(DefenceSpec()) == ("`attractor`: iterate x <- G(x) until max|x_(k+1) - x_k| < 0.001 per sample, "
                                            "at most 1 iterations, iterates clipped to [0, 1]: True; backward pass for "
                                            "`pipeline` attacks: `unrolled`.")
    assert _defence_text(DefenceSpec("none", {})).startswith("none (the model's single pass")
    outside = DefenceSpec("attractor", {"k": 2}, object(), "mypkg:attractor")
    assert _defence_text(outside) == ("`attractor` (mypkg:attractor), parameters {'k': 2}; `bpda` attacks see it as the "
                                      "identity in the backward pass.")
