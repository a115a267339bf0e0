"""The model zoo (issue 39): safetensors weights with a manifest, checked by SHA-256, served to the model
cache by the cache key they were trained under, and `load_model` of the leaderboard's names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attractor_bench import api, cache, zoo
from attractor_bench.data import Split
from attractor_bench.errors import ConfigError
from attractor_bench.files import weights_fingerprint
from attractor_bench.models import MODELS
from attractor_bench.protocol import leaderboard_models
from attractor_bench.zoo_export import export, refresh_runs

PARAMS = {"n_train": 64, "max_epochs": 1}


def _ctx(tmp_path, name="cache") -> cache.Context:
    rng = np.random.default_rng(0)
    split = lambda n: Split(rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64))
    return cache.Context(split(64), split(32), 0, tmp_path / name)


@pytest.fixture
def filled(tmp_path, monkeypatch):
    """A tiny trained MLP written to a zoo in tmp_path/zoo (the environment points the zoo there)."""
    ctx = _ctx(tmp_path)
    module, blob, cached = cache.get_or_fit(MODELS["mlp"], PARAMS, ctx)
    assert not cached
    key = cache.recipe_path(MODELS["mlp"], MODELS["mlp"].split(PARAMS)[0], ctx).stem
    net = zoo.Network(module, blob, key, "recipe", "mlp", MODELS["mlp"].split(PARAMS)[0], {})
    monkeypatch.setenv(zoo.ENV_VAR, str(tmp_path / "zoo"))
    doc = zoo.write({"mlp": net}, {"tiny": {"network": "mlp", "suite": "test"}}, None)
    return ctx, module, doc


def test_round_trip_keeps_the_weights_and_the_manifest_says_what_they_are(filled, tmp_path):
    ctx, module, doc = filled
    entry = doc["networks"]["mlp"]
    assert (tmp_path / "zoo" / "mlp.safetensors").is_file() and entry["sha256"] == zoo.sha256(tmp_path / "zoo" / "mlp.safetensors")
    assert doc["models"]["tiny"]["weights"] == entry["weights"] == weights_fingerprint(module)
    loaded = zoo.load("tiny")
    assert weights_fingerprint(loaded) == weights_fingerprint(module) and not loaded.training
    x = torch.from_numpy(ctx.val.x[:4])
    assert torch.equal(loaded(x), module(x))
    assert b"__reduce__" not in (tmp_path / "zoo" / "mlp.safetensors").read_bytes()[:200]  # not a pickle


def test_equal_weights_under_two_keys_are_one_file_and_both_keys_hit(tmp_path, monkeypatch):
    """A longer training that early stopping ended at the same epoch has the same weights under another key:
    the zoo stores them once, and each key is served its (hash-checked) weights."""
    ctx = _ctx(tmp_path)
    module, blob, _ = cache.get_or_fit(MODELS["mlp"], PARAMS, ctx)
    other = MODELS["mlp"].make(**MODELS["mlp"].split(PARAMS)[0])
    other.load_state_dict(module.state_dict())
    changed = MODELS["mlp"].make(**MODELS["mlp"].split(PARAMS)[0])
    changed.load_state_dict({k: v + (k.endswith("bias") and v.numel() == 10) for k, v in module.state_dict().items()})
    nets = {stem: zoo.Network(m, blob, f"mlp-{stem}", "recipe", "mlp", MODELS["mlp"].split(PARAMS)[0], {})
            for stem, m in (("short", module), ("long", other), ("changed", changed))}
    monkeypatch.setenv(zoo.ENV_VAR, str(tmp_path / "zoo"))
    doc = zoo.write(nets, {}, None)
    assert sorted(f.name for f in (tmp_path / "zoo").glob("*.safetensors")) == ["changed.safetensors", "short.safetensors"]
    assert doc["networks"]["long"]["file"] == doc["networks"]["short"]["file"] == "short.safetensors"
    assert doc["networks"]["changed"]["weights"] != doc["networks"]["short"]["weights"]
    assert doc["bytes"] == sum(f.stat().st_size for f in (tmp_path / "zoo").glob("*.safetensors"))
    for stem in nets:
        entry, weights = zoo.lookup(f"mlp-{stem}")
        assert zoo.fill(zoo.build(entry), entry, weights) is not None and entry["cache_key"] == f"mlp-{stem}"


def test_a_zoo_hit_is_not_trained_and_another_key_is(filled, tmp_path, monkeypatch):
    ctx, module, _ = filled
    fresh = cache.Context(ctx.train, ctx.val, 0, tmp_path / "empty")  # another machine: an empty model cache
    recipe = MODELS["mlp"]
    monkeypatch.setitem(MODELS, "mlp", type(recipe)(**{**recipe.__dict__, "fit": _no_training}))
    got, blob, cached = cache.get_or_fit(MODELS["mlp"], PARAMS, fresh)
    assert cached and blob["zoo"] == "mlp.safetensors" and weights_fingerprint(got) == weights_fingerprint(module)
    assert not (tmp_path / "empty" / "models").exists()  # served from the zoo, nothing trained or written
    with pytest.raises(AssertionError, match="trained"):  # other parameters: another key, no hit
        cache.get_or_fit(MODELS["mlp"], {**PARAMS, "max_epochs": 2}, fresh)
    with pytest.raises(AssertionError, match="trained"):  # use_zoo=False (load_model(train=True)) skips it
        cache.get_or_fit(MODELS["mlp"], PARAMS, cache.Context(ctx.train, ctx.val, 0, tmp_path / "e2", use_zoo=False))


def _no_training(*a, **k):
    raise AssertionError("trained although the zoo holds this key")


def test_an_altered_file_is_refused_with_a_clear_message(filled, tmp_path):
    f = tmp_path / "zoo" / "mlp.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(zoo.ZooError, match="does not match the manifest's .*refusing to load it"):
        zoo.load("tiny")
    with pytest.raises(zoo.ZooError, match="does not match"):  # the cache's lookup checks it too
        cache.get_or_fit(MODELS["mlp"], PARAMS, cache.Context(filled[0].train, filled[0].val, 0, tmp_path / "empty"))
    f.unlink()
    with pytest.raises(zoo.ZooError, match="is missing"):
        zoo.load("tiny")


def test_the_budget_is_checked_before_writing(filled, tmp_path):
    _, module, _ = filled
    net = zoo.Network(module, {}, "k", "recipe", "mlp", PARAMS, {})
    with pytest.raises(zoo.ZooError, match="over its budget"):
        zoo.write({"big": net}, {"big": {"network": "big"}}, None, tmp_path / "z2", budget=1000)
    assert not (tmp_path / "z2").exists()


def test_refreshing_runs_points_each_model_at_the_newest_run_of_its_weights_and_leaves_the_files(filled, tmp_path):
    """After a regeneration, `scripts/zoo_export.py --runs-only` fills each model's `run` from the committed runs
    without a cache: the newest run whose model has the zoo's weights; another model's weights do not count."""
    import json

    _, module, doc = filled
    before = (tmp_path / "zoo" / "mlp.safetensors").read_bytes()
    fp = weights_fingerprint(module)
    for suite, date, weights in [("old", "2026-01-01", fp), ("new", "2026-02-01", fp), ("other", "2026-03-01", "f" * 32)]:
        (tmp_path / "results" / suite).mkdir(parents=True)
        (tmp_path / "results" / suite / "run.json").write_text(json.dumps(
            {"date": date, "commit": "c0ffee", "models": {"tiny": {"weights": weights}}}))
    assert doc["models"]["tiny"].get("run") is None
    got = refresh_runs(results_dir=tmp_path / "results")
    assert got["models"]["tiny"]["run"] == {"suite": "new", "commit": "c0ffee", "date": "2026-02-01", "protocol": None}
    assert zoo.read_manifest()["models"]["tiny"]["run"]["suite"] == "new"
    assert (tmp_path / "zoo" / "mlp.safetensors").read_bytes() == before
    assert zoo.read_manifest()["networks"] == doc["networks"]


def test_export_refuses_what_the_cache_lacks_and_names_the_command(data_root, tmp_path):
    with pytest.raises(ConfigError, match=r"not in the model cache .*attractor-bench train suites/leaderboard.yaml"):
        export(["mlp"], tmp_path / "cache", data_root, path=tmp_path / "zoo")
    with pytest.raises(ConfigError, match="not a leaderboard model: nope; known: .*attractor_at_01_long"):
        export(["nope"], tmp_path / "cache", data_root, path=tmp_path / "zoo")


def test_load_model_resolves_leaderboard_names_to_their_suites_specs(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.ENV_VAR, str(tmp_path / "no-zoo"))
    fits, trains = [], []
    monkeypatch.setattr(api, "get_or_fit", lambda r, p, ctx: fits.append((r.name, p, ctx.use_zoo)) or (torch.nn.Linear(1, 1),))
    monkeypatch.setattr(api, "get_or_train", lambda cfg, *a, **k: trains.append((cfg, k)) or (torch.nn.Linear(1, 1),))
    common = dict(data_root=data_root, cache_dir=tmp_path, download=False)
    with pytest.warns(UserWarning, match="attractor_at_01_long is not in the zoo"):
        api.load_model("attractor_at_01_long", **common)
    assert fits[-1] == ("attractor_at", {"eps": 0.1, "step_size": 0.025, "max_epochs": 30}, True)
    with pytest.warns(UserWarning, match="not in the zoo"):
        api.load_model("attractor", **common)
    assert trains[-1][0] == leaderboard_models()["attractor"][1].train and trains[-1][0].early_stopping.value == "best"
    api.load_model("attractor", **common, early_stopping="paper")  # with overrides: the preset
    assert trains[-1][0].early_stopping.value == "paper"
    api.load_model("apudae", **common, train=True)  # train=True: the zoo is skipped
    assert fits[-1] == ("mlp", {}, False)
    with pytest.raises(ConfigError, match="Unknown model 'nope'; known: .*attractor_at_01_long.*feature_dae"):
        api.load_model("nope", **common)


def test_load_model_takes_a_ranked_name_from_the_zoo_without_training(filled, data_root, monkeypatch):
    _, module, doc = filled
    monkeypatch.setattr(zoo, "read_manifest", lambda path=None: {**doc, "models": {"mlp": doc["models"]["tiny"]}})
    monkeypatch.setattr(api, "get_or_fit", _no_training)
    got = api.load_model("mlp", data_root=data_root, download=False, device="cpu")
    assert weights_fingerprint(got) == weights_fingerprint(module)


def test_every_ranked_row_loads_from_the_committed_zoo_with_the_weights_it_was_measured_with(data_root, tmp_path,
                                                                                              monkeypatch):
    """Issue 39: `load_model(name)` for each ranked row of the committed leaderboard returns, from zoo/ and without
    training, the weights behind the row (their fingerprint in results/LEADERBOARD.json)."""
    import json

    rows = json.loads((Path(__file__).parents[1] / "results" / "LEADERBOARD.json").read_text())["rows"]
    assert rows  # a leaderboard without ranked rows would make this test vacuous
    monkeypatch.setattr(api, "get_or_fit", _no_training)
    for row in rows:
        got = api.load_model(row["name"], data_root=data_root, cache_dir=tmp_path, download=False, device="cpu")
        assert weights_fingerprint(got) == row["weights"], row["name"]


def test_a_leaderboard_suite_trains_nothing_on_an_empty_cache_and_says_where_the_weights_came_from(data_root, tmp_path):
    """Issue 39's "`run suites/leaderboard.yaml` on a fresh clone trains nothing", for the suite with the largest
    network (`cnn_at`, 13 MB): `train` on an empty cache serves both models from zoo/ and says so."""
    from typer.testing import CliRunner

    from attractor_bench.cli import app

    suite = Path(__file__).parents[1] / "suites" / "leaderboard_sota.yaml"
    result = CliRunner().invoke(app, ["train", str(suite), "--data-root", str(data_root),
                                      "--cache-dir", str(tmp_path / "empty"), "--no-download"])
    assert result.exit_code == 0, result.output
    assert "leaderboard_sota: 2 models ready (0 trained now; 2 from the zoo: cnn_at, mlp)" in result.output
    assert not (tmp_path / "empty" / "models").exists()
