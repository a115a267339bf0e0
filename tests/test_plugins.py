"""Outside models, defences and attacks enter suites without editing the package: by entry points
of an installed distribution, and by `module:callable` references. The plugin is docs/plugins.md's
example, examples/plugins/tiny_plugins.py."""

import json
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from attractor_bench.cli import app
from conftest import MICRO, REPO, run_args

runner = CliRunner()
tomllib = pytest.importorskip("tomllib")  # Python 3.11+: reads the example's pyproject
EXAMPLE = REPO / "examples" / "plugins"


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The example installed as a distribution `tiny-plugins` (a site folder with its module and
    dist-info, as pip would lay it out) on sys.path, so its entry points are found."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(EXAMPLE / "tiny_plugins.py", site)
    info = site / "tiny_plugins-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-plugins\nVersion: 0.1.0\n")
    groups = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]["entry-points"]
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {ref}\n" for name, ref in eps.items()) for group, eps in groups.items()))
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("tiny_plugins", None)


@pytest.fixture
def wide(monkeypatch):
    """The CLI's console wide enough that table cells are not wrapped."""
    from rich.console import Console

    import attractor_bench.cli

    monkeypatch.setattr(attractor_bench.cli, "out", Console(width=300))


def test_list_shows_where_each_entry_comes_from(installed, wide):
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[2].strip(): line for line in result.output.splitlines() if line.count("│") >= 4}
    assert "built-in" in lines["fgsm"] and "built-in" in lines["attractor"]
    for name, ref in [("quantize", "tiny_plugins:quantize"), ("small_mlp", "tiny_plugins:small_mlp"),
                      ("uniform_noise", "tiny_plugins:uniform_noise")]:
        assert f"entry point tiny-plugins ({ref})" in lines[name]
    assert "Bit-depth reduction" in lines["quantize"]


def test_a_suite_with_an_outside_defence(installed, micro_run, data_root, tmp_path):
    """The micro suite plus its attractor behind the entry point `quantize`: the built-in models'
    cells come from the uninterrupted run's store and equal its numbers; the outside defence is
    measured by every attack and its zero gradients raise the sanity flag."""
    doc = yaml.safe_load(MICRO.read_text())
    doc["name"] = "micro_plugin"
    doc["models"]["attractor_quantized"] = {**doc["models"]["attractor"], "defence": {"name": "quantize", "levels": 16}}
    suite = tmp_path / "micro_plugin.yaml"
    suite.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, run_args(suite, data_root, micro_run.cache, tmp_path / "results"))
    assert result.exit_code == 0, result.output
    assert "Resumed:" in result.output
    table = pd.read_csv(tmp_path / "results" / "micro_plugin" / "results.csv")
    micro = pd.read_csv(micro_run.folder / "results.csv")
    keys = ["model", "attack", "eps", "dataset", "metric"]
    both = micro[micro.kind == "cell"]
    merged = both.merge(table, on=keys, suffixes=("_micro", "_plugin"))
    assert len(merged) == len(both)
    assert np.array_equal(merged.value_micro.values, merged.value_plugin.values, equal_nan=True)
    v = table.set_index(keys).value
    q = table[table.model == "attractor_quantized"]
    assert set(q.attack) >= {"none", "fgsm", "transfer_pgd", "deepfool"}
    assert v[("attractor_quantized", "sanity", 0.0, "mnist", "zero_gradient_share_pipeline")] == 1.0
    assert v[("attractor_quantized", "sanity", 0.0, "mnist", "flag_zero_gradients")] == 1
    assert v[("attractor_quantized", "sanity", 0.0, "mnist", "potentially_unreliable")] == 1
    assert q[q.dataset == "fashion_mnist"].query("metric == 'accepted'").value.eq(1.0).all()  # no rejector
    readme = (tmp_path / "results" / "micro_plugin" / "README.md").read_text()
    assert "`quantize` (entry point tiny-plugins (tiny_plugins:quantize))" in readme


def test_the_example_suite_by_reference(data_root, tmp_path, monkeypatch):
    """examples/plugins/suite.yaml names its model, defence and attack as module:callable."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    result = runner.invoke(app, run_args(EXAMPLE / "suite.yaml", data_root, tmp_path / "cache", tmp_path / "results"))
    sys.modules.pop("tiny_plugins", None)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "results" / "tiny_plugins" / "results.csv")
    v = table.set_index(["model", "attack", "eps", "dataset", "metric"]).value
    assert set(table.model) == {"mlp", "mlp_quantized"}
    assert {"noise", "fgsm", "pgd_bpda"} <= set(table.attack)
    for m in ("mlp", "mlp_quantized"):
        assert v[(m, "none", 0.0, "mnist", "accuracy")] > 0.5  # the tiny MLP learned something
        assert v[(m, "noise", 0.1, "mnist", "perturbation_linf")] <= 0.1 + 1e-6
        assert np.isnan(v[(m, "none", 0.0, "fashion_mnist", "ood_AUROC")])  # no rejector, no detection score
    assert v[("mlp", "sanity", 0.0, "mnist", "flag_zero_gradients")] == 0
    assert v[("mlp_quantized", "sanity", 0.0, "mnist", "flag_zero_gradients")] == 1
    # the undefended MLP under FGSM through its own gradients loses accuracy
    assert v[("mlp", "fgsm", 0.1, "mnist", "accuracy")] < v[("mlp", "none", 0.0, "mnist", "accuracy")] - 0.2


def test_an_outside_defence_brings_its_own_rejector_and_gets_end_to_end_columns(data_root, tmp_path, monkeypatch):
    """tests/rejecting_plugin.py: a defence whose `rejector()` returns a Rejector (fitted by the runner on
    the validation split): its model gets acceptance, end-to-end accuracy and detection metrics like the
    attractor's, and run.json records its rejector and threshold."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    suite = tmp_path / "rejecting.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "rejecting", "seed": 0, "data": {"n_test": 100, "n_ood": 100, "ood": ["fashion_mnist"]},
        "models": {"mlp": {"preset": "tiny_plugins:small_mlp", "params": {"hidden": 32, "epochs": 1},
                           "defence": {"name": "rejecting_plugin:clip_with_rejector"}}},
        "attacks": [{"name": "fgsm", "eps": [0.1], "target": "pipeline"}]}))
    result = runner.invoke(app, run_args(suite, data_root, tmp_path / "cache", tmp_path / "results"))
    sys.modules.pop("tiny_plugins", None)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "results" / "rejecting"
    v = pd.read_csv(folder / "results.csv").set_index(["model", "attack", "eps", "dataset", "metric"]).value
    assert 0.8 <= v[("mlp", "none", 0.0, "mnist", "accepted")] < 1.0  # about 95%, as fitted on the validation split
    assert v[("mlp", "none", 0.0, "mnist", "end_to_end_accuracy")] < v[("mlp", "none", 0.0, "mnist", "accuracy")]
    assert v[("mlp", "fgsm", 0.1, "fashion_mnist", "accepted")] < 1.0
    assert 0.0 <= v[("mlp", "none", 0.0, "fashion_mnist", "ood_AUROC")] <= 1.0  # a detection score, not NaN
    info = json.loads((folder / "run.json").read_text())["models"]["mlp"]
    assert info["rejector"] == "plugin_msp" and info["threshold"] < 0  # minus a softmax probability


def test_a_broken_entry_point_is_reported(installed, wide, tmp_path, data_root):
    (installed / "tiny_plugins.py").write_text("raise ImportError('broken on purpose')\n")
    listing = CliRunner().invoke(app, ["list"])
    assert listing.exit_code == 0 and "fails to load: ImportError: broken on purpose" in listing.output
    suite = tmp_path / "s.yaml"
    suite.write_text("models: {m: {preset: baseline}}\nattacks: [{name: uniform_noise, eps: [0.1]}]\n")
    result = runner.invoke(app, run_args(suite, data_root, tmp_path / "cache", tmp_path / "results"))
    assert result.exit_code == 2
    assert "the attack entry point 'uniform_noise' (tiny_plugins:uniform_noise) failed to load" in " ".join(result.output.split())


def test_a_defence_registered_under_the_old_group_still_resolves_with_a_warning(installed):
    """The entry-point group followed the folder's rename (defences -> defenses, docs/release-notes.md):
    a distribution that still registers under the old group keeps working for a release, with a warning."""
    from attractor_bench import plugins

    entry_points = next(installed.glob("*.dist-info")) / "entry_points.txt"
    text = entry_points.read_text()
    assert "[attractor_bench.defenses]" in text
    entry_points.write_text(text.replace("[attractor_bench.defenses]", "[attractor_bench.defences]"))
    with pytest.warns(DeprecationWarning, match="attractor_bench.defences"):
        found = plugins.resolve("defence", "quantize")
    assert found.origin == "entry point tiny-plugins (tiny_plugins:quantize)" and callable(found.obj)
