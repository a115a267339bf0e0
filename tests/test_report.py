"""The results README, from a synthetic run (no training): the paper comparison finds our
numbers by model preset and by the FGSM-on-network attack, whatever they are called."""

import pandas as pd
import yaml

from attractor_bench.config import load_suite
from attractor_bench.paper import EPS_TABLE
from attractor_bench.report import render_readme
from attractor_bench.runner import RunResult


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
