"""The OOD-under-attack evaluation (attractor_bench.ood): metrics against brute-force definitions,
the synthetic sets, the rejectors against the project's PearsonRejector, the score attacks'
directions and budgets, the K+1 model's decision rule, the suite's errors, the best rejector chosen
on validation images apart from the test images, and one CLI run whose README re-renders from its
files; its cells: in the one cell store with its integrity record, all read from there by a second
run, recomputed only for a bumped rejector, computed alike by worker processes."""

import io
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from attractor_bench import AttractorNet
from attractor_bench.cli import app
from attractor_bench.defenses import AttractorDefence, PearsonRejector
from attractor_bench.errors import ConfigError
from attractor_bench.data import mnist_train_val
from attractor_bench.ood import synthetic
from attractor_bench import parallel
from attractor_bench.determinism import deterministic
from attractor_bench.ood.cells import PGD_CE, compute_ood_cell, plan
from attractor_bench.ood.evaluate import (COLUMNS, N_VALIDATION, OODResult, load_sets, load_workspace, rows, selection,
                                          validation_sets)
from attractor_bench.progress import Log
from attractor_bench.store import CellStore
from attractor_bench.ood.attacks import ScoreModel, bounds, score_attack, _Detector, _Softmax
from attractor_bench.metrics import accuracy_coverage, ood_metrics, threshold_at_tpr
from attractor_bench.ood.rejectors import reconstruction
from attractor_bench.ood.report import meta_doc, rerender
from attractor_bench.ood.suite import load_ood_suite
from attractor_bench.rejectors import ReconstructionSimilarity, Rejector

from conftest import REPO
from test_cache_keys import bumped


@pytest.fixture
def scores():
    rng = np.random.default_rng(1)
    # outlier scores (higher = more OOD); rounding makes ties
    return -np.round(rng.normal(0.9, 0.05, 300), 2), -np.round(rng.normal(0.8, 0.1, 200), 2)


def _brute(id_s, ood_s):
    """pytorch-ood's definitions, written out: outlier scores, OOD positive."""
    o_id, o_ood = id_s, ood_s
    auroc = np.mean((o_ood[:, None] > o_id[None]) + 0.5 * (o_ood[:, None] == o_id[None]))
    fpr95 = None
    for t in np.unique(np.r_[o_id, o_ood])[::-1]:  # the threshold falls: more flagged as OOD
        if np.mean(o_ood >= t) >= 0.95:
            fpr95 = np.mean(o_id >= t)
            break

    def aupr(pos, neg):  # (recall 0, precision 1), then a point per threshold as it falls; trapezoids
        pts = [(np.mean(pos >= t), np.sum(pos >= t) / (np.sum(pos >= t) + np.sum(neg >= t)))
               for t in np.unique(np.r_[pos, neg])[::-1]]
        r, p = zip(*([(0.0, 1.0)] + pts))
        return np.trapezoid(p, r)
    return {"AUROC": auroc, "FPR95TPR": fpr95, "AUPR-OUT": aupr(o_ood, o_id), "AUPR-IN": aupr(-id_s, -ood_s)}


def test_metrics_follow_pytorch_ood_definitions(scores):
    got, want = ood_metrics(*scores), _brute(*scores)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-9), k
    assert ood_metrics(np.zeros(5), np.ones(5)) == {"AUROC": 1.0, "AUPR-IN": 1.0, "AUPR-OUT": 1.0, "FPR95TPR": 0.0}
    with pytest.raises(ValueError, match="NaN"):
        ood_metrics(np.array([np.nan, 1.0]), np.zeros(3))


def test_accuracy_coverage_and_threshold():
    s, ok = np.array([0.6, 0.7, 0.8, 0.9]), np.array([True, False, True, True])  # the lowest outlier score first
    cov, acc = accuracy_coverage(s, ok)
    assert cov.tolist() == [0.25, 0.5, 0.75, 1.0] and acc.tolist() == pytest.approx([1.0, 0.5, 2 / 3, 0.75])
    t = threshold_at_tpr(np.arange(100.0), 0.95)
    assert t == 94.0 and np.mean(np.arange(100.0) <= t) == 0.95


def test_synthetic_sets_are_seeded_images():
    for name in synthetic.DISPLAY_NAMES:
        a, b, c = synthetic.load(name, 8, 0), synthetic.load(name, 8, 0), synthetic.load(name, 8, 1)
        assert a.x.shape == (8, 1, 28, 28) and a.x.dtype == np.float32 and (a.y == -1).all()
        assert np.array_equal(a.x, b.x) and not np.array_equal(a.x, c.x)
        assert not np.array_equal(a.x, synthetic.load(name, 8, 0, part="validation").x)  # a stream of its own
        assert a.x.min() >= 0 and a.x.max() <= 1
    smooth, noise = synthetic.load("smooth_noise", 8).x, synthetic.load("uniform_noise", 8).x
    tv = lambda x: np.abs(np.diff(x, axis=-1)).mean()  # low-frequency: neighbours close
    assert tv(smooth) < tv(noise) / 4
    with pytest.raises(KeyError):
        synthetic.load("gaussian", 2)


@pytest.fixture
def attractor():
    torch.manual_seed(0)
    model = AttractorNet().eval()
    return model, AttractorDefence(model, max_iter=2)


def test_similarity_rejector_is_the_projects_pearson_rejector(attractor, images):
    model, defence = attractor
    r = ReconstructionSimilarity(lambda x: defence.iterate(x)[0])
    np.testing.assert_allclose(r.score(images), PearsonRejector(defence, 0.8).score(images), atol=1e-6)
    assert reconstruction(None) is None and reconstruction(defence) is None  # the attractor's is its own rejector


def test_score_attacks_move_the_score_their_way_within_the_ball(attractor, images):
    model, defence = attractor
    r = PearsonRejector(defence, 0.8)
    clean = r.score(images)  # outlier scores: `reject` pushes them up, `accept` down
    for name, budget in (("pgd", {"max_iter": 5}), ("apgd", {"n_iter": 5}), ("square", {"n_queries": 30})):
        for direction, better in (("reject", np.greater_equal), ("accept", np.less_equal)):
            adv = score_attack(name, r, images, 0.1, direction, clean, 0, budget)
            assert np.abs(adv - images).max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
            moved = r.score(adv)
            assert better(moved.mean(), clean.mean()), (name, direction)
            assert better(moved, clean + (1e-6 if direction == "accept" else -1e-6)).mean() >= 0.75, (name, direction)
    with pytest.raises(ValueError, match="unknown score attack"):
        score_attack("fgsm", r, images, 0.1, "reject", clean, 0)


class _MeanScore(Rejector):
    def forward(self, x):
        return x.flatten(1).mean(1)


def test_score_model_margin_stays_positive_on_clean_scores():
    clean = np.array([0.2, 0.5, 0.9])
    for direction in ("reject", "accept"):
        bound, spread = bounds(clean, direction)
        r = _MeanScore(0.5)
        z = ScoreModel(r, direction, bound, spread)(torch.tensor(clean, dtype=torch.float32).view(3, 1, 1, 1))
        assert (z[:, 0] > z[:, 1]).all()  # never "fooled": Square keeps every image in play


def test_k_plus_one_class_wins_exactly_where_the_rejector_rejects(attractor, images):
    from art.estimators.classification import PyTorchClassifier
    from art.estimators.classification.detector_classifier import DetectorClassifier
    model, defence = attractor
    r = PearsonRejector(defence, None)
    r.threshold = float(np.median(r.score(images)))
    kw = dict(loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28), clip_values=(0.0, 1.0))
    k1 = DetectorClassifier(PyTorchClassifier(_Softmax(lambda x: model(defence.iterate(x)[0])), nb_classes=10, **kw),
                            PyTorchClassifier(_Detector(r), nb_classes=2, **kw))
    rejected = k1.predict(images).argmax(1) == 10
    assert rejected.any() and not rejected.all()
    assert np.array_equal(rejected, r.score(images) > r.threshold)


def _two_rejectors(test_best: str, val_best: str) -> dict:
    """One model's arrays with rejectors `similarity` and `msp` against one OOD set: on the test images
    `test_best` separates MNIST from the OOD images and the other inverts them; on the validation
    images `val_best` does."""
    rng = np.random.default_rng(0)
    hi, lo = rng.uniform(0.6, 1.0, 40), rng.uniform(0.0, 0.4, 40)
    arrays = {"correct/clean": np.ones(40, bool)}
    for r in ("similarity", "msp"):
        arrays[f"threshold/{r}"] = np.array([0.5])
        for prefix, best in (("", test_best), ("val/", val_best)):
            id_s, ood_s = (lo, hi) if r == best else (hi, lo)  # outlier scores: the best scores MNIST low
            for cond in ("clean", "pgd/0.1"):
                arrays[f"{prefix}score/{r}/mnist/{cond}"], arrays[f"{prefix}score/{r}/uniform_noise/{cond}"] = id_s, ood_s
    return arrays


def test_the_best_rejector_is_chosen_on_validation_images_not_on_the_test_sets():
    """The choice follows the validation images' robust AUROC whatever the test sets say; the test
    sets' numbers are then reported for the chosen rejector."""
    suite = SimpleNamespace(name="s", eps=(0.1,), attacks=("pgd",), ood=("uniform_noise",))

    def best(test_best, val_best):
        arrays = _two_rejectors(test_best, val_best)
        table = pd.DataFrame(rows("m", arrays, suite), columns=COLUMNS)
        meta = {"models": {"m": {}}, "validation": {"n_images": {}, "eps": 0.1, "robust_auroc": {"m": selection(arrays, suite)}}}
        doc = meta_doc(OODResult(suite, table, meta), "cmd", None, "today")
        assert doc["auroc"]["models"]["m"][test_best]["uniform_noise"]["robust"] == 1.0  # the test sets' numbers
        return doc["best_rejector"]["m"]
    assert best(test_best="msp", val_best="similarity") == "similarity"
    assert best(test_best="similarity", val_best="similarity") == "similarity"  # the test scores change nothing
    assert best(test_best="similarity", val_best="msp") == "msp"


def test_validation_images_are_apart_from_the_test_images(data_root):
    suite = SimpleNamespace(name="s", n_test=20, n_ood=16, n_validation=12, seed=0,
                            ood=("fashion_mnist", "cifar10_bw", "uniform_noise", "smooth_noise"))
    mnist_val = mnist_train_val(data_root, download=False)[1]
    val, test = validation_sets(suite, mnist_val, data_root, False), load_sets(suite, data_root, False)
    rows_of = lambda x: {row.tobytes() for row in x}
    assert list(val) == list(test) and all(len(v) == 12 for v in val.values())
    for name in val:
        assert not rows_of(val[name].x) & rows_of(test[name].x), name
    assert not rows_of(val["mnist"].x) & rows_of(mnist_val.x[:N_VALIDATION])  # nor those that calibrate thresholds
    assert np.array_equal(validation_sets(suite, mnist_val, data_root, False)["cifar10_bw"].x, val["cifar10_bw"].x)
    with pytest.raises(ConfigError, match="apart from the test images"):
        validation_sets(SimpleNamespace(**{**vars(suite), "n_ood": 9995}), mnist_val, data_root, False)


@pytest.mark.parametrize("text, match", [
    ("n_test: 5\n", "models_from"),
    ("models_from: [micro.yaml]\nood: [svhn]\n", "unknown OOD set"),
    ("models_from: [micro.yaml]\nattacks: [fgsm]\n", "unknown score attack"),
    ("models_from: [micro.yaml]\nmodels: [cnn_at]\n", "no suite of 'models_from' defines"),
    ("models_from: [micro.yaml]\neps: [0]\n", "eps"),
    ("models_from: [micro.yaml]\nbudgets: {square: {steps: 3}}\n", "budgets"),
    ("models_from: [micro.yaml]\ncolour: red\n", "unknown key"),
    ("models_from: [micro.yaml, micro.yaml]\n", "in both"),
])
def test_bad_ood_suites_say_what_is_wrong(tmp_path, text, match):
    (tmp_path / "micro.yaml").write_text((REPO / "suites" / "micro.yaml").read_text())
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_ood_suite(path)
    result = CliRunner().invoke(app, ["ood", str(path), "--results-dir", str(tmp_path / "r"), "--no-download"])
    assert result.exit_code == 2 and not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def ood_run(tmp_path_factory, data_root):
    tmp = tmp_path_factory.mktemp("ood")
    result = CliRunner().invoke(app, ["ood", str(REPO / "suites" / "ood_micro.yaml"), "--data-root", str(data_root),
                                      "--cache-dir", str(tmp / "cache"), "--results-dir", str(tmp / "results"),
                                      "--no-download"])  # progress on: not a terminal, so one line per step
    assert result.exit_code == 0, result.output
    (tmp / "log.txt").write_text(result.output)
    return tmp / "results" / "ood_micro"


def test_ood_run_writes_every_set_rejector_direction_and_cross_check(ood_run):
    t = pd.read_csv(ood_run / "ood.csv")
    meta = json.loads((ood_run / "ood.json").read_text())
    assert set(t.dataset) == {"fashion_mnist", "cifar10_bw", "uniform_noise", "smooth_noise"}
    assert set(t.model) == {"baseline", "attractor"} and set(t.rejector) == {"similarity", "msp", "energy"}
    assert set(t.direction) == {"clean", "id", "ood", "joint"}
    assert {"pgd", "apgd", "square", "worst", "rejection_aware", "k_plus_one", "stronger"} <= set(t.attack)
    for (m, r, d), g in t[t.direction != "clean"].groupby(["model", "rejector", "dataset"]):
        joint = g[g.direction == "joint"].set_index("attack").AUROC
        assert joint["worst"] <= joint[["pgd", "apgd", "square"]].min() + 1e-9  # the per-image worst is at least as strong
    cross = t[t.attack.isin(["rejection_aware", "k_plus_one", "stronger"])].pivot_table(
        index=["model", "dataset"], columns="attack", values="ood_accepted")
    assert (cross.stronger >= cross[["rejection_aware", "k_plus_one"]].max(axis=1) - 1e-9).all()
    assert meta["kind"] == "ood" and set(meta["best_rejector"]) == {"baseline", "attractor"}
    val = meta["validation"]  # the choice: on 4 validation images per set (the default: a quarter of n_ood 16)
    assert val["n_images"] == {"mnist": 4, "fashion_mnist": 4, "cifar10_bw": 4, "uniform_noise": 4, "smooth_noise": 4}
    for m, rs in val["robust_auroc"].items():
        assert set(rs) == set(t[t.model == m].rejector) and meta["best_rejector"][m] == min(rs, key=lambda r: (-rs[r], r))
    assert "on validation images, none of them a test image" in (ood_run / "README.md").read_text()
    assert (ood_run / "accuracy_coverage.png").stat().st_size > 0
    assert (ood_run / "README.md").read_text() == rerender(ood_run)


def test_a_second_ood_run_computes_no_cell(ood_run, data_root, monkeypatch):
    """Every OOD cell of the second run is read from the cell store: computing one, or fitting a rejector's
    threshold (which only computing a cell needs), fails the test."""
    import attractor_bench.ood.cells as ood_cells
    import attractor_bench.ood.evaluate as evaluate
    from attractor_bench.rejectors import Rejector

    def recompute(ws, c, store):
        raise AssertionError(f"cell {c.label} was computed again instead of read from the cell store")

    def fit(self, *args, **kwargs):
        raise AssertionError(f"rejector {self.name} was fitted although every cell is stored")
    monkeypatch.setattr(evaluate, "compute_ood_cell", recompute)
    monkeypatch.setattr(ood_cells, "compute_ood_cell", recompute)
    monkeypatch.setattr(Rejector, "fit", fit)
    tmp = ood_run.parent.parent
    again = CliRunner().invoke(app, ["ood", str(REPO / "suites" / "ood_micro.yaml"), "--data-root", str(data_root),
                                     "--cache-dir", str(tmp / "cache"), "--results-dir", str(tmp / "again"),
                                     "--no-download"])
    assert again.exit_code == 0, again.output
    first, second = (json.loads((f / "ood.json").read_text())["cells"] for f in (ood_run, tmp / "again" / "ood_micro"))
    assert first["computed"] == first["total"] > 200 and first["from_store"] == 0
    assert second == {"total": first["total"], "from_store": first["total"], "computed": 0, "failed_verification": 0}
    assert f"{first['total']} cells: {first['total']} in the cell store, 0 to compute" in " ".join(again.output.split())
    assert (tmp / "again" / "ood_micro" / "ood.csv").read_bytes() == (ood_run / "ood.csv").read_bytes()


@pytest.fixture(scope="module")
def ood_cells(ood_run, data_root):
    """The OOD run's workspace, loaded again from its cache (models, images, rejectors), its cell store and cells."""
    suite = load_ood_suite(REPO / "suites" / "ood_micro.yaml")
    cache = ood_run.parent.parent / "cache"
    log = Log(Console(file=io.StringIO()), False)
    with deterministic(), log:
        ws, _ = load_workspace(suite, data_root, cache, False, log, torch.device("cpu"))
    return ws, CellStore(cache / "cells"), [c for cs in plan(ws).values() for c in cs]


def test_a_bumped_rejector_recomputes_only_its_own_cells(ood_cells):
    """A new version of the attractor's rejector (rejector.pearson) changes the keys of the similarity
    cells alone (its scores, its cross-checks); the msp and energy cells and the stored PGD examples stay."""
    ws, store, cells = ood_cells
    assert all(store.path(c.key).is_file() for c in cells)  # the run stored every cell
    with bumped("rejector.pearson"):
        again = [c for cs in plan(ws).values() for c in cs]
    missing = [c for c in again if not store.path(c.key).is_file()]
    assert [c.where for c in missing] == [c.where for c in cells if c.rejector == "similarity"]
    assert {c.attack for c in missing} >= {"none", "pgd", "rejection_aware", "k_plus_one", PGD_CE}
    assert all(store.path(c.shared).is_file() for c in again if c.shared)
    with bumped("ood.attacks"):  # the score attacks: their cells (and K+1's) recomputed, the clean cells kept
        missing = {c.attack for cs in plan(ws).values() for c in cs if not store.path(c.key).is_file()}
    assert missing == {"pgd", "apgd", "square", "k_plus_one"}
    with bumped("summary"):  # a component no OOD cell uses: every cell stays
        assert all(store.path(c.key).is_file() for cs in plan(ws).values() for c in cs)


def test_an_ood_cell_is_in_the_one_cell_store_with_its_integrity_record(ood_cells, tmp_path):
    """An OOD cell is a file of the classification cells' store (`<cache>/cells`), checked the same way: a
    changed score is caught by its integrity record, counted as rejected and computed again, to the same bits."""
    ws, store, cells = ood_cells
    c = next(c for c in cells if (c.model, c.rejector, c.attack, c.split) == ("baseline", "msp", "none", "validation"))
    assert store.path(c.key).parent.name == "cells" and store.path(c.key).is_file()
    out, header = store.get(c.key)
    assert header["cell"] == c.where and set(out) == {"score", "threshold"}
    copy = CellStore(tmp_path / "cells")
    copy.root.mkdir()
    with np.load(store.path(c.key)) as z:  # the same file, one score changed, its integrity record kept
        arrays = {k: z[k] for k in z.files}
    arrays["score"] = arrays["score"] + np.float32(1)
    with open(copy.path(c.key), "wb") as f:
        np.savez(f, **arrays)
    assert copy.get(c.key) is None and copy.rejected == 1
    again, _ = compute_ood_cell(ws, c, copy)
    assert np.array_equal(again["score"], out["score"]) and copy.get(c.key) is not None


def test_ood_cells_computed_by_worker_processes_equal_the_sequential_ones(ood_cells, tmp_path):
    """The workers compute OOD cells by their kind (`parallel.compute`), their rejectors rebuilt there."""
    ws, store, cells = ood_cells
    job = [c for c in cells if (c.model, c.rejector, c.split) == ("baseline", "energy", "validation")]
    assert len(job) == 5 * 4 and len({c.attack for c in job}) == 4  # clean and three score attacks, five sets
    fresh = CellStore(tmp_path / "cells")
    assert parallel.compute(ws, job, fresh, workers=2) == {c.key for c in job}
    for c in job:
        assert np.array_equal(fresh.get(c.key)[0]["score"], store.get(c.key)[0]["score"]), c.label


@pytest.mark.parametrize("folder", sorted(p.name for p in (REPO / "results").iterdir() if (p / "ood.json").is_file()))
def test_committed_ood_readmes_are_what_report_renders_from_their_files(folder):
    assert (REPO / "results" / folder / "README.md").read_text() == rerender(REPO / "results" / folder)


def test_validate_checks_an_ood_suite():
    result = CliRunner().invoke(app, ["validate", str(REPO / "suites" / "ood.yaml")])
    assert result.exit_code == 0, result.output
    assert ("ood.yaml: OK (OOD suite: 7 models, 4 OOD sets, 3 score attacks at 1 eps; contracts checked: 7 models "
            "dry-run).") in " ".join(result.output.split())  # their defences built and run on untrained networks


def test_an_older_versions_ood_cache_is_named_with_its_size_and_kept(tmp_path):
    from attractor_bench.ood.evaluate import _old_cache_notice
    (tmp_path / "ood" / "m").mkdir(parents=True)
    (tmp_path / "ood" / "m" / "x.npz").write_bytes(b"0" * 2**20)
    out = io.StringIO()
    _old_cache_notice(tmp_path / "ood", Log(Console(file=out, width=300), True))
    assert "no longer reads" in out.getvalue() and "free 1.0 MiB" in out.getvalue() and (tmp_path / "ood").is_dir()
    quiet = io.StringIO()
    _old_cache_notice(tmp_path / "none", Log(Console(file=quiet, width=300), True))
    assert quiet.getvalue() == ""
