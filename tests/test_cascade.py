"""`worst_case: cascade`: each attack on the images every earlier one failed on. The worst case must
be the one every attack on every image gives; the cascade's cells attack fewer images and say how
many, and what they spent."""


import pandas as pd
import pytest

from attractor_bench.config import load_suite
from attractor_bench.runner import run_suite

SUITE = """
seed: 0
worst_case: {mode}
data: {{n_test: 80, n_ood: 20, ood: [fashion_mnist]}}
models:
  baseline:
    preset: baseline
    train: {{n_train: 300, n_val: 100, max_epochs: 2, pretrain: false}}
  mlp: {{preset: mlp, defence: {{name: none}}, params: {{max_epochs: 1, n_train: 2000}}}}
defence: {{name: attractor, tol: 0.001, max_iter: 1, backward: unrolled}}
rejector: {{threshold: 0.5}}
attacks:
  # Deterministic per image (no random start), so a subset gives each image the same examples.
  - {{name: pgd, eps: [0.05, 0.1], target: pipeline, ood: false, params: {{max_iter: 5, num_random_init: 0}}}}
  - {{name: fgsm, eps: [0.05, 0.1], target: pipeline}}
  - {{name: bim, eps: [0.05, 0.1], target: pipeline, n: 50, ood: false, params: {{max_iter: 5}}}}
  - {{name: fgsm, label: fgsm_network, eps: [0.1], target: network, ood: false}}
  - {{name: pgd, label: transfer_pgd, eps: [0.1], target: transfer, source: mlp, ood: false, params: {{max_iter: 3}}}}
  - {{name: fgsm, label: fgsm_full, eps: [0.1], target: pipeline, ood: false, full: true}}
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_root):
    tmp = tmp_path_factory.mktemp("cascade")
    out = {}
    for mode in ("full", "cascade"):
        path = tmp / f"{mode}.yaml"
        path.write_text(SUITE.format(mode=mode))
        out[mode] = run_suite(path, data_root=data_root, cache_dir=tmp / "cache", download=False, progress=False)
    out["cache"] = tmp / "cache"
    return out


def test_the_cascade_gives_the_worst_case_of_every_attack_on_every_image(runs):
    full, cascade = (r.table for r in (runs["full"], runs["cascade"]))
    wc = lambda t: t[t.kind == "worst_case"].reset_index(drop=True)
    assert len(wc(full)) > 0
    pd.testing.assert_frame_equal(wc(full), wc(cascade))
    values = wc(full)
    assert values[(values.metric == "accuracy") & (values.dataset == "mnist")].value.between(0.05, 0.95).any()


def test_cascading_cells_attack_only_what_is_left_and_count_their_passes(runs):
    t, meta = runs["cascade"].table, runs["cascade"].meta
    cells = t[(t.kind == "cell") & (t.dataset == "mnist")].pivot_table(index=["model", "attack", "eps"], columns="metric",
                                                                       values="value")
    full = runs["full"].table
    full_cells = full[(full.kind == "cell") & (full.dataset == "mnist")].pivot_table(
        index=["model", "attack", "eps"], columns="metric", values="value")
    assert meta["worst_case"] == "cascade" and meta["attacks"]["pgd"]["cascade"] and not meta["attacks"]["fgsm_full"]["cascade"]
    assert not meta["attacks"]["transfer_pgd"]["cascade"]  # shared examples: always on every image
    for model in ("baseline", "mlp"):
        # cost order at eps 0.1: the full attacks first (transfer, fgsm_full), then fgsm, fgsm_network, bim, pgd
        chain = [cells.loc[(model, a, 0.1)] for a in ("fgsm", "fgsm_network", "bim", "pgd")]
        assert all(c["n_attacked"] <= 80 for c in chain)
        assert chain[-1]["n_attacked"] < 80  # pgd only saw what the cheaper attacks left
        assert chain[-1]["accuracy"] <= full_cells.loc[(model, "pgd", 0.1)]["accuracy"]
        assert chain[-1]["backward_passes"] < full_cells.loc[(model, "pgd", 0.1)]["backward_passes"]
        assert full_cells.loc[(model, "pgd", 0.1)]["n_attacked"] == 80
        assert full_cells.loc[(model, "pgd", 0.1)]["backward_passes"] == 80 * 5  # 5 steps, no random start
        # the full attacks are the same cells in both runs
        for a in ("fgsm_full", "transfer_pgd"):
            assert cells.loc[(model, a, 0.1)]["accuracy"] == full_cells.loc[(model, a, 0.1)]["accuracy"]


@pytest.mark.slow  # worker processes start in about 20 s each
def test_a_cascade_with_workers_gives_the_same_table(runs, data_root):
    suite = load_suite(runs["cascade"].suite.path)
    again = run_suite(suite, data_root=data_root, cache_dir=runs["cache"], download=False, progress=False, workers=2,
                      fresh=True)  # the models from the cache, every cell computed again, in rounds
    assert again.meta["cells"]["computed"] == again.meta["cells"]["total"]
    pd.testing.assert_frame_equal(again.table, runs["cascade"].table)


def test_worst_case_and_full_are_checked(tmp_path):
    from attractor_bench.errors import ConfigError
    path = tmp_path / "bad.yaml"
    path.write_text(SUITE.format(mode="sometimes"))
    with pytest.raises(ConfigError, match="worst_case"):
        load_suite(path)
    path.write_text(SUITE.format(mode="cascade").replace("full: true", "full: 3"))
    with pytest.raises(ConfigError, match="full"):
        load_suite(path)
