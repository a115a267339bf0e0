"""The robust-flags record (`flags.py`), the worst case's one owner (issue 37): computed once per
model, stored with the run, and enough, with results.csv and run.json, to rebuild summary.json."""

import json
import shutil
import sys

import numpy as np
import pytest
from conftest import MICRO, rebuilt_by_report
from typer.testing import CliRunner

from attractor_bench import flags, robustness
from attractor_bench.cli import app
from attractor_bench.errors import AttractorBenchError
from attractor_bench.runner import run_suite
from attractor_bench.summary import from_folder

runner = CliRunner()


def test_a_runs_summary_is_rebuilt_from_its_files_byte_for_byte(micro_run, tmp_path):
    written, rebuilt = rebuilt_by_report(micro_run.folder, tmp_path, "summary.json")
    assert rebuilt == written
    folder = tmp_path / micro_run.folder.name
    # the record holds each worst case image by image, as summary.json shows it
    records, summary = flags.read(folder), json.loads(written)
    for m in summary["models"]:
        rec = records[m["name"]]
        assert [(w["norm"], w["eps"], w["attacks"], w["n"]) for w in m["worst_case"]] == [
            (f.norm, f.eps, list(f.attacks), len(f.idx)) for f in rec.points]
        assert m["clean"]["accuracy"] == round(rec.clean.robust.mean(), 6)


def test_a_summary_is_not_rebuilt_without_the_record(micro_run, tmp_path):
    folder = tmp_path / "micro"
    shutil.copytree(micro_run.folder, folder)
    written = (folder / "summary.json").read_bytes()
    (folder / flags.FILE).unlink()  # a run written before the record existed
    result = runner.invoke(app, ["report", str(folder)])
    assert result.exit_code == 0, result.output  # the README is re-rendered, the summary kept as it was
    assert (folder / "summary.json").read_bytes() == written
    with pytest.raises(AttractorBenchError, match="robust_flags.json"):
        from_folder(folder)


def test_the_worst_case_is_computed_once_per_model(micro_run, data_root, monkeypatch):
    """Every function of robustness.py that computes a worst case (named worst_case*) is called once
    per model in a run, wherever it is imported; the cells come from the store."""
    calls = []
    for name in [n for n in dir(robustness) if n.startswith("worst_case") and callable(getattr(robustness, n))]:
        original = getattr(robustness, name)

        def counted(*args, _f=original, _n=name, **kwargs):
            calls.append(_n)
            return _f(*args, **kwargs)

        for mod in [m for k, m in list(sys.modules.items()) if k.startswith("attractor_bench") and m is not None]:
            if getattr(mod, name, None) is original:
                monkeypatch.setattr(mod, name, counted)
    result = run_suite(MICRO, data_root=data_root, cache_dir=micro_run.cache, download=False, progress=False)
    assert calls == ["worst_case", "worst_case"]  # two models
    assert set(result.robust_flags) == {"baseline", "attractor"}
    for rec in result.robust_flags.values():
        assert [(f.norm, f.eps) for f in rec.points] == [("l2", 1.0), ("l2", 2.0), ("linf", 0.1)]
        assert set(rec.ood) == {"fashion_mnist"}
        f = rec.main()[("linf", 0.1)]
        assert not (f.robust & ~rec.clean.on(f.idx, "robust")).any()  # narrowed from the clean flags
        assert np.array_equal(f.safe, f.safe & f.robust)
