"""Bad input at the command line: a one-paragraph message naming the problem and the fix, exit code
2 for usage and configuration errors (1 for missing data and broken checkpoints), no traceback
unless --debug, and nothing written."""

import pytest
import torch
import yaml
from typer.testing import CliRunner

from attractor_bench import data
from attractor_bench.cache import get_or_train, model_key, resolve_cache_dir
from attractor_bench.cli import app
from attractor_bench.config import load_suite
from conftest import run_args

runner = CliRunner()
GOOD = {"name": "tiny", "data": {"n_test": 50, "ood": []},
        "models": {"m": {"preset": "baseline", "train": {"n_train": 64, "n_val": 64, "max_epochs": 1, "pretrain": False}}},
        "attacks": [{"name": "fgsm", "eps": [0.1]}]}


def _doc(**changes):
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    for key, value in changes.items():
        node, *path = key.split(".")
        target = doc
        for k in [node, *path][:-1]:
            target = target[int(k)] if isinstance(target, list) else target[k]
        last = [node, *path][-1]
        target[int(last) if isinstance(target, list) else last] = value
    return yaml.safe_dump(doc)


CASES = {  # name: (suite file text or None for a missing file, what the message must say)
    "missing file": (None, "suite file not found"),
    "not YAML": ("models: [unclosed", "not valid YAML"),
    "not a mapping": ("- fgsm\n- pgd\n", "must be a YAML mapping"),
    "unknown key": (_doc(colour="red"), "colour: unknown key. Allowed here:"),
    "unknown model": (_doc(**{"models.m.preset": "resnet"}), "models.m.preset: unknown model 'resnet'"),
    "unknown attack": (_doc(**{"attacks.0.name": "deepfoo"}), "attacks[0].name: unknown attack 'deepfoo'"),
    "unknown dataset": (_doc(**{"data.ood": ["svhn"]}), "data.ood[0]: unknown value 'svhn'"),
    "wrong type": (_doc(**{"data.n_test": "many"}), "data.n_test: expected an integer, got 'many'"),
    "eps negative": (_doc(**{"attacks.0.eps": [-0.1]}), "attacks[0].eps[0]: -0.1 is outside [0, 1]"),
    "eps above 1": (_doc(**{"attacks.0.eps": [1.5]}), "attacks[0].eps[0]: 1.5 is outside [0, 1]"),
    "empty eps list": (_doc(**{"attacks.0.eps": []}), "attacks[0].eps: expected a non-empty list"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_suite(tmp_path, data_root, case):
    text, message = CASES[case]
    suite = tmp_path / "suite.yaml"
    if text is not None:
        suite.write_text(text)
    args = run_args(suite, data_root, tmp_path / "cache", tmp_path / "results")
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert str(suite) in "".join(result.output.split())
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()
    # --debug shows the underlying error instead
    debug = runner.invoke(app, [*args, "--debug"])
    assert debug.exit_code != 0 and not isinstance(debug.exception, SystemExit)


def test_data_root_without_files_offline(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(GOOD))
    result = runner.invoke(app, run_args(suite, tmp_path / "empty", tmp_path / "cache", tmp_path / "results"))
    assert result.exit_code == 1
    assert "Dataset files missing" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "results").exists()


def _checkpoint_path(suite_path, data_root, cache) -> tuple:
    cfg = load_suite(suite_path).models[0].train
    splits = data.mnist_train_val(data_root, download=False)
    return cfg, splits, resolve_cache_dir(cache) / "models" / f"{model_key(cfg, *splits)}.pt"


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "other architecture"])
def test_broken_checkpoint(tmp_path, data_root, damage):
    suite, cache = tmp_path / "suite.yaml", tmp_path / "cache"
    suite.write_text(yaml.safe_dump(GOOD))
    cfg, splits, path = _checkpoint_path(suite, data_root, cache)
    if damage == "corrupt":
        path.parent.mkdir(parents=True)
        path.write_bytes(b"not a checkpoint")
    elif damage == "truncated":
        get_or_train(cfg, *splits, cache_dir=cache)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.parent.mkdir(parents=True)
        torch.save({"state_dict": torch.nn.Linear(3, 3).state_dict(), "config": cfg.to_dict(), "history": {}}, path)
    result = runner.invoke(app, run_args(suite, data_root, cache, tmp_path / "results"))
    assert result.exit_code == 1, result.output
    flat = "".join(result.output.split())  # the console wraps long paths
    assert "".join(f"Checkpoint {path} is corrupt or does not match the architecture. Delete it to retrain.".split()) in flat
    assert "Traceback" not in result.output
    assert not (tmp_path / "results").exists()


def test_checkpoints_are_read_with_weights_only(tmp_path, data_root):
    """A checkpoint that would run code when unpickled is refused, not executed."""
    suite, cache = tmp_path / "suite.yaml", tmp_path / "cache"
    suite.write_text(yaml.safe_dump(GOOD))
    _, _, path = _checkpoint_path(suite, data_root, cache)
    path.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"state_dict": Evil()}, path)
    result = runner.invoke(app, run_args(suite, data_root, cache, tmp_path / "results"))
    assert result.exit_code == 1 and "corruptordoesnotmatch" in "".join(result.output.split())
    assert not marker.exists()
