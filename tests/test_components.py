"""Numbers keyed by what computes them (attractor_bench/components.py, lock.py, currency.py).

The lock agrees with the code; comment, docstring and message edits change no hash and no key;
a behavioural edit without a bump fails the lock naming its component; a new attack or preset
stales nothing; a bump of one attack re-keys that attack's cells only and stales only the numbers
it contributed to; another torch, ART or numpy ranks every row it ranks here."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from attractor_bench import components, leaderboard, lock, page
from conftest import as_current
from attractor_bench.attacks import ATTACKS
from attractor_bench.cache import recipe_key, training_key
from attractor_bench.cells import attack_identity, cell_code
from attractor_bench.config import load_suite
from attractor_bench.models import MODELS
from attractor_bench.presets import PRESETS

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"


@pytest.fixture(autouse=True)
def fresh_components():
    components.reset()
    yield
    components.reset()


def committed(tmp_path) -> Path:
    """A copy of the committed results (the leaderboard is built there, not in the repository), the
    component versions they record brought to today's: the tests ask what a bump stales, starting
    from a board whose numbers are all current (the committed ones wait for issue 38's regeneration
    since its run-wide bumps, such as the classifier's)."""
    dest = tmp_path / "results"
    shutil.copytree(RESULTS, dest)
    return as_current(dest)


def board(results: Path) -> tuple[list[dict], dict]:
    b = leaderboard.build(results)
    doc = json.loads(page.render_json(b))
    return doc["rows"], doc.get("stale", {})


def keys() -> dict:
    """Every key a run computes from the code: the cells', each attack's, each model's training."""
    suite = load_suite(REPO / "suites" / "same_numbers.yaml")
    out = {"cell": cell_code(), **{f"attack {a.label}": json.dumps(attack_identity(a), sort_keys=True) for a in suite.attacks}}
    out |= {f"preset {n}": training_key(cfg) for n, cfg in PRESETS.items()}
    out |= {f"recipe {n}": recipe_key(r, r.split({})[0], 0) for n, r in MODELS.items()}
    return out


def test_the_lock_agrees_with_the_code():
    problems = lock.problems(lock.read(), components.lock_state())
    assert not problems, "\n".join(problems)


def test_a_module_that_only_moved_is_recorded_without_a_bump_and_a_move_with_an_edit_is_not():
    """`lock.moved` (scripts/lock.py --moved OLD=NEW) accepts a component whose code is the lock's once the moved
    module is named back: here the lock as it would read had `attractor_bench.defenses` been called
    `attractor_bench.elsewhere`. A component whose code moved and also changed is refused."""
    reg, move = components.registry(), {"attractor_bench.elsewhere": "attractor_bench.defenses"}
    now = reg.state()
    before = {n: {**s, "hash": lock._hash(lock._moved_back(reg.closure(n)[0], move))} for n, s in now.items()}
    changed = {n for n in now if before[n]["hash"] != now[n]["hash"]}
    assert {"defence.attractor", "defence.dae", "rejector.pearson", "recipe.apudae_dae"} <= changed
    assert "attack.fgsm" not in changed and "cell" not in changed
    assert len(lock.problems(before, now)) == len(changed)  # without the record, each is refused
    assert set(lock.moved(reg, before, move)) == changed
    edited = [(node, text.replace("Constant(value=1)", "Constant(value=2)", 1)) for node, text in reg.closure("defence.dae")[0]]
    assert edited != list(reg.closure("defence.dae")[0])
    before["defence.dae"]["hash"] = lock._hash(lock._moved_back(edited, move))
    assert set(lock.moved(reg, before, move)) == changed - {"defence.dae"}


def _comments_and_messages(src: str) -> str:
    """`src` with a comment before every definition, its docstrings and error messages reworded."""
    src = re.sub(r"^(\s*)(def |class )", r"\1# an edited comment\n\1\2", src, flags=re.M)
    src = re.sub(r'((?:def|class) [^\n]*:\n\s*)"""', r'\1"""Edited docstring. ', src)
    return re.sub(r'(raise \w+\(f?)"', r'\1"Edited message: ', src)


def _source_with(edit):
    import inspect
    from types import ModuleType

    def source_of(obj):
        src = Path(obj.__file__).read_text() if isinstance(obj, ModuleType) else inspect.getsource(obj)
        return edit(obj, src)
    return source_of


def test_comment_docstring_and_message_edits_change_no_hash_and_no_key(monkeypatch):
    before, hashes = keys(), {n: s["hash"] for n, s in lock.read().items()}
    edited = []

    def edit(obj, src):
        new = _comments_and_messages(src)
        edited.append(new != src)
        return new

    now = components.lock_state(_source_with(edit))
    assert sum(edited) > 40, "the edit reached too few definitions to mean anything"
    assert {n: s["hash"] for n, s in now.items()} == hashes
    assert not lock.problems(lock.read(), now)
    monkeypatch.setattr(lock, "_source", lambda obj, source_of: _source_with(edit)(obj))
    components.reset()
    assert keys() == before  # no cell and no model recomputed


@pytest.mark.parametrize("target,old,new,component", [
    ("attractor_bench.attacks:_fgsm", "norm=np.inf", "norm=2", "attack.fgsm"),
    ("attractor_bench.cells:_predict", "batch_size=EVAL_BATCH", "batch_size=EVAL_BATCH // 2", "cell"),
    ("attractor_bench.robustness", "ZERO_GRAD_MAX_SHARE = 0.01", "ZERO_GRAD_MAX_SHARE = 0.02", "worst_case"),
    ("attractor_bench.models.mlp:fit_pgd_at", "step_size=step_size", "step_size=step_size / 2", None),
])
def test_a_behavioural_edit_without_a_bump_fails_the_lock_naming_its_component(target, old, new, component):
    import inspect
    from types import ModuleType

    obj = lock.resolve(target)
    target_src = Path(obj.__file__).read_text() if isinstance(obj, ModuleType) else inspect.getsource(obj)
    assert old in target_src
    edited = target_src.replace(old, new, 1)

    def edit(o, src):  # one edit of the file, wherever a component reads it: the definition, or its whole module
        return src.replace(target_src, edited) if inspect.getsourcefile(o) == inspect.getsourcefile(obj) else src

    problems = lock.problems(lock.read(), components.lock_state(_source_with(edit)))
    named = sorted(re.match(r"component (\S+):", p).group(1) for p in problems)
    expected = [component] if component else ["recipe.cnn_at", "recipe.pgd_at"]  # PGD training serves both recipes
    assert named == expected
    assert all("bump its version" in p and "same_numbers.py" in p for p in problems)


def test_a_new_attack_and_a_new_preset_stale_nothing_and_recompute_nothing(tmp_path, monkeypatch):
    results = committed(tmp_path)
    rows, stale = board(results)
    before = keys()
    monkeypatch.setitem(ATTACKS, "fgsm_small_batch", dataclasses.replace(ATTACKS["fgsm"], defaults={"batch_size": 8}))
    monkeypatch.setitem(PRESETS, "attractor_wide", dataclasses.replace(PRESETS["attractor"], n_train=1000))
    components.reset()
    assert "attack.fgsm_small_batch" in components.current()
    after = keys()
    assert {k: v for k, v in after.items() if k != "preset attractor_wide"} == before
    assert board(results) == (rows, stale)


def test_a_bump_of_one_attack_rekeys_its_cells_and_stales_only_its_numbers(tmp_path, monkeypatch):
    """The rejection-aware attack runs on the models with the attractor's rejector only: a bump of it
    stales their worst cases (it is taken over at every eps there) and nothing of the other rows."""
    results = committed(tmp_path)
    rows, stale = board(results)
    before = keys()
    entry = ATTACKS["rejection_aware"]
    monkeypatch.setitem(ATTACKS, "rejection_aware", dataclasses.replace(entry, version=entry.version + 1))
    components.reset()
    after = keys()
    assert sorted(k for k in before if before[k] != after[k]) == ["attack rejection_aware"]
    new_rows, new_stale = board(results)
    assert sorted(r["model"] for r in new_rows) == sorted(r["model"] for r in rows)  # ranks may move, rows stay
    old, new = ({r["model"]: r for r in rs} for rs in (rows, new_rows))
    with_rejector = {m for m, r in old.items() if r["threshold"] is not None}
    assert with_rejector and with_rejector != set(old)
    for m, r in old.items():
        assert new[m]["numbers"]["clean"] == r["numbers"]["clean"]  # clean cells: no attack
        for k in ("worst_case_0.1", "worst_case_0.3"):
            if m in with_rejector:  # no other run has these models' worst cases without the attack
                assert new[m]["numbers"][k]["value"] is None, (m, k)
            else:
                assert new[m]["numbers"][k] == r["numbers"][k], (m, k)
    notes = " ".join(v["why"] for v in new_stale.values())
    assert "attacks rejection_aware" in notes and "attack.rejection_aware" not in components.RUN_WIDE


def test_another_torch_art_and_numpy_rank_every_row(tmp_path, monkeypatch):
    import art
    import torch

    results = committed(tmp_path)
    rows, stale = board(results)
    # what is stale is stale by a component's version, never by a library
    assert len(rows) >= 9 and all("older version" in v["why"] and "torch" not in v["why"] for v in stale.values())
    monkeypatch.setattr(torch, "__version__", "2.99.0+cu130")
    monkeypatch.setattr(art, "__version__", "9.9.9")
    monkeypatch.setattr(np, "__version__", "9.9.9")
    components.reset()
    assert board(results) == (rows, stale)


def test_a_run_records_the_versions_it_used_and_its_environment():
    used = components.used_by_run(components.for_model("attractor", "attractor", True), ["pgd", "fgsm"])
    assert {"cell", "worst_case", "summary", "train.attractor", "net.attractor", "defence.attractor", "rejector.pearson",
            "attack.pgd", "attack.fgsm"} <= set(used)
    assert "attack.square" not in used and "recipe.mlp" not in used
    assert components.for_model("mlp", "none", False) == ["defence.bpda", "recipe.mlp"]  # `none` lives beside BPDA
    assert components.for_model("my_pkg:build", "my_pkg:defend", False, origin="my_pkg", defence_origin="my_pkg") == []


def test_a_model_is_stale_by_the_components_its_run_recorded_not_by_a_guess():
    """A model record carries the components its run.json says it used (records.py); a bump of one of them
    stales it, though its preset and defence alone would not name it (a purifier's own rejector). A record
    from before that list falls back to what its preset and defence imply."""
    from attractor_bench.currency import current_run

    now = components.current()
    used = dict(now)
    model = {"name": "apudae", "preset": "mlp", "identity": {"defence": {"name": "apudae", "origin": "built-in"}},
             "has_rejector": True, "worst_case": [], "ood": [], "verdict": {}}
    recorded = {**model, "components": sorted(components.for_model("mlp", "apudae", None) + ["rejector"])}
    run = {"components": used, "models": [recorded, {**model, "name": "guessed"}], "attack_names": {}}
    bumped = {**now, "rejector": now["rejector"] + 1}
    kept, notes = current_run(run, {"components": {}, "checks": []}, bumped)
    assert [m["name"] for m in kept["models"]] == ["guessed"]
    assert notes == [f"`apudae`: trained or defended with older versions of rejector v{now['rejector']} -> v{now['rejector'] + 1}"]
    kept, notes = current_run(run, {"components": {}, "checks": []}, now)
    assert [m["name"] for m in kept["models"]] == ["apudae", "guessed"] and notes == []


def test_a_plain_value_s_text_is_the_same_under_every_hash_seed():
    """A component that reaches a module-level set of strings hashes its text: that text must not follow
    PYTHONHASHSEED (repr of a set does), or the lock would disagree with itself from one process to the next."""
    import os
    import subprocess
    import sys

    code = "from attractor_bench.lock import canonical; print(canonical({'torch', 'numpy', 'art', ('b', frozenset('xyz'))}))"
    out = [subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": str(seed)},
                          capture_output=True, text=True, check=True).stdout for seed in range(6)]
    reprs = [subprocess.run([sys.executable, "-c", "print(repr({'torch', 'numpy', 'art', 'scipy'}))"],
                            env={**os.environ, "PYTHONHASHSEED": str(seed)}, capture_output=True, text=True).stdout
             for seed in range(6)]
    assert len(set(reprs)) > 1  # what the canonical text guards against
    assert len(set(out)) == 1, out
