"""The README's ART example runs as written (with an untrained model instead of a trained one)."""

import re
from pathlib import Path

import numpy as np
import torch

import attractor_bench

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_art_example_runs(monkeypatch, data_root):
    monkeypatch.setenv("ATTRACTOR_BENCH_DATA", str(data_root))
    torch.manual_seed(0)
    untrained = attractor_bench.AttractorNet().eval()
    monkeypatch.setattr(attractor_bench, "load_model", lambda *a, **k: untrained)
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    block = block.replace(".x[:100]", ".x[:8]").replace("max_iter=40", "max_iter=3")  # keep it quick
    scope: dict = {}
    exec(compile(block, str(README), "exec"), scope)
    assert scope["x_adv"].shape == (8, 1, 28, 28)
    assert np.abs(scope["x_adv"] - scope["x"]).max() <= 0.1 + 1e-6
    assert scope["is_ood"].shape == (8,) and scope["report"]["similarity"].shape == (8,)
    assert scope["predictions"].shape == (8,)


def test_readme_plugin_example_is_the_tested_one():
    """The plugin code and entry points shown in the README are the files tests/test_plugins.py runs."""
    text = README.read_text()
    example = README.parent / "examples" / "plugins"
    shown = re.search(r"```python\n# examples/plugins/tiny_plugins.py\n(.*?)```", text, re.S).group(1)
    assert shown == (example / "tiny_plugins.py").read_text()
    toml = re.search(r"```toml\n# examples/plugins/pyproject.toml[^\n]*\n(.*?)```", text, re.S).group(1)
    assert toml in (example / "pyproject.toml").read_text()
    assert "attractor_bench.defenses" in toml
