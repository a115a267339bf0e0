"""The validation-split scripts run end to end on a tiny setting and print what their docs quote."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # about 17 s
def test_attractor_at_probe_trains_and_prints_both_eps(data_root):
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "attractor_at_probe.py"), "--data-root", str(data_root),
                          "--epochs", "1", "--n-train", "256", "--n-val", "40"],
                         capture_output=True, text=True, timeout=300, check=True, cwd=REPO).stdout
    assert "trained 1 epochs at eps 0.3" in out
    rows = [l for l in out.splitlines() if re.match(r"\| 0\.[13] \|", l)]
    assert [r.split("|")[1].strip() for r in rows] == ["0.1", "0.3"]
    for r in rows:
        values = [float(v) for v in r.strip("|").split("|")[1:]]
        assert len(values) == 5 and all(0 <= v <= 100 for v in values)


def _same_numbers():
    import importlib.util
    spec = importlib.util.spec_from_file_location("same_numbers", REPO / "scripts" / "same_numbers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _side(code: str, weights: str) -> dict:
    versions = {"code": code, "ood": "o-" + code} if code == "old" else {"components": {"cell": 1}}
    return {"versions": versions, "files": {"same_numbers/results.csv": "t1", "ood_micro/ood.csv": "t2"},
            "weights": {"baseline": "w0", "attractor": weights}, "seconds": 1.0}


@pytest.mark.parametrize("new_weights,same", [("w1", True), ("w2", False)])
def test_same_numbers_records_a_link_only_when_every_table_and_weight_is_identical(tmp_path, monkeypatch, capsys,
                                                                                    new_weights, same):
    """The run itself (two installs, two suites from empty caches) takes half an hour; this checks what it
    decides from the two sides' hashes: a single differing weight means exit 1 and nothing recorded."""
    from attractor_bench import components, lock

    sn = _same_numbers()
    monkeypatch.setattr(sn, "side", lambda name, *a: _side("old", "w1") if name == "old" else _side("new", new_weights))
    # one component whose code changed at its version, and a lock written here, never to the repository's file
    monkeypatch.setattr(lock, "read", lambda *a: {"cell": {"version": 1, "hash": "h0"}})
    monkeypatch.setattr(components, "lock_state", lambda *a: {"cell": {"version": 1, "hash": "h1"}})
    written = []
    monkeypatch.setattr(lock, "write", lambda now, locked, checked, *a: written.append(checked) or list(checked))
    results = tmp_path / "results"
    results.mkdir()
    code = sn.main(["--old", "HEAD", "--record", "--keep", str(tmp_path / "work"), "--results-dir", str(results)])
    out = capsys.readouterr().out
    assert code == (0 if same else 1) and f"same_numbers={same}" in out
    lineage = results / "CARRIED_OVER.json"
    if same:
        import json
        doc = json.loads(lineage.read_text())
        [link] = doc["checks"]
        assert link["code"] == {"from": "old", "to": "component versions"}
        assert link["ood"] == {"from": "o-old", "to": "component versions"}
        assert link["command"].startswith("python scripts/same_numbers.py --old ") and doc["components"] == {"cell": 1}
        assert [list(w) for w in written] == [["cell"]] and "Lock updated for: cell" in out
    else:
        assert "weights attractor" in out and "DIFFERENT" in out and not lineage.exists() and not written


def test_redraw_figures_redraws_what_the_committed_files_hold_and_changes_no_number(tmp_path):
    import hashlib
    import shutil

    from conftest import as_current

    res = tmp_path / "results"
    for name in ("leaderboard_attractor_at", "ood_cnn_at"):  # a run and an OOD run (the leaderboard built from them)
        shutil.copytree(REPO / "results" / name, res / name)
    shutil.copy(REPO / "results" / "CARRIED_OVER.json", res)  # links their code fingerprints to component versions
    as_current(res)  # read as current: until the regeneration, issue 38's bumps stale every committed run
    for name in ("iterates.png", "similarity.png"):  # figures the files cannot redraw stay as they are
        (res / "leaderboard_attractor_at" / name).write_bytes(b"untouched")
    (res / "leaderboard_attractor_at" / "similarity.svg").unlink(missing_ok=True)  # and gain no SVG beside them

    def digests(ext):
        return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in res.rglob(f"*.{ext}")}

    numbers = {**digests("csv"), **digests("json"), **digests("md")}
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "redraw_figures.py"), "--results-dir", str(res)],
                         capture_output=True, text=True, timeout=300, check=True, cwd=REPO).stdout
    assert {**digests("csv"), **digests("json"), **digests("md")} == numbers  # no number, no README touched
    drawn = [res / "leaderboard_attractor_at" / "accuracy_linf", res / "ood_cnn_at" / "accuracy_coverage", res / "leaderboard_worst_case"]
    for stem in drawn:
        assert stem.with_suffix(".png").read_bytes().startswith(b"\x89PNG") and "<svg" in stem.with_suffix(".svg").read_text()
        assert f"redrawn {stem}.png" in out
    assert (res / "leaderboard_attractor_at" / "similarity.png").read_bytes() == b"untouched"
    assert (res / "leaderboard_attractor_at" / "iterates.png").read_bytes() == b"untouched"
    assert not (res / "leaderboard_attractor_at" / "similarity.svg").exists() and "left as they are" in out
    assert not list(res.glob("LEADERBOARD*"))  # the figure only, not the leaderboard's tables


def test_reproduce_records_a_stopped_steps_part_and_sums_every_calls_parts(tmp_path):
    """scripts/reproduce.sh with a stand-in `attractor-bench` (it fails on the first `run`, as a stopped call would):
    the stopped step's part is recorded and marked, and the next call's summary adds both parts of that step."""
    fake = tmp_path / "bin" / "attractor-bench"
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env bash\nif [[ "$1" == run && ! -e "$STOP_ONCE" ]]; then touch "$STOP_ONCE"; exit 3; fi\n')
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "SUITES": "leaderboard", "STOP_ONCE": str(tmp_path / "stopped"),
           "HOME": str(tmp_path)}
    cmd = ["bash", str(REPO / "scripts" / "reproduce.sh"), "data", str(tmp_path / "cache")]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert first.returncode == 3
    rows = [l.split("\t") for l in (tmp_path / "cache" / "reproduce-times.tsv").read_text().splitlines()]
    assert [(r[0], r[4:]) for r in rows] == [("train", []), ("leaderboard", ["stopped"])]
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert second.returncode == 0, second.stderr
    rows = [l.split("\t") for l in (tmp_path / "cache" / "reproduce-times.tsv").read_text().splitlines()]
    assert [(r[0], r[4:]) for r in rows][2:] == [("train", []), ("leaderboard", []), ("leaderboard_tables", []),
                                                 ("reproduction", [])]
    summary = second.stdout.split("every call, per step:")[1].split()
    assert summary[0::3] == ["train", "leaderboard", "leaderboard_tables", "reproduction", "all"] and summary[2::3] == ["s"] * 5


def test_reproduce_skips_the_steps_skip_names_and_records_none_of_them(tmp_path):
    """SKIP (a lost cache: the committed steps are not computed again): the named steps neither run nor get a time."""
    fake = tmp_path / "bin" / "attractor-bench"
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env bash\necho "$*" >> "$CALLS"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "SUITES": "leaderboard leaderboard_sota", "SKIP": "leaderboard",
           "CALLS": str(tmp_path / "calls"), "HOME": str(tmp_path)}
    out = subprocess.run(["bash", str(REPO / "scripts" / "reproduce.sh"), "data", str(tmp_path / "cache")],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "step leaderboard: skipped (SKIP)" in out.stdout
    calls = [c.split()[:2] for c in (tmp_path / "calls").read_text().splitlines()]
    assert calls == [["train", "suites/leaderboard.yaml"], ["run", "suites/leaderboard_sota.yaml"],
                     ["leaderboard", "--results-dir"], ["reproduction", "--results-dir"]]
    steps = [l.split("\t")[0] for l in (tmp_path / "cache" / "reproduce-times.tsv").read_text().splitlines()]
    assert steps == ["train", "leaderboard_sota", "leaderboard_tables", "reproduction"]


def test_fixed_point_census_runs_on_the_zoo_models(data_root):
    """docs/results.md quotes it; it had stopped importing (a helper it used had moved) without any test noticing."""
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "fixed_point_census.py"), "--data-root", str(data_root),
                          "--n", "20", "--max-iter", "3", "--presets", "attractor"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    [line] = [l for l in out.stdout.splitlines() if l.startswith("attractor:")]
    counts = [int(c) for c in re.search(r"fixed point \[([\d, ]+)\]", line).group(1).split(",")]
    assert len(counts) == 10 and sum(counts) == 20 and "mean iterations" in line
