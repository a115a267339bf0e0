"""Property-based fuzzing of suite files (Hypothesis): malformed suites, made by mutating a valid
one (a value replaced by a hostile one, a key removed or added, bytes spliced into the text), end
in exit code 1 or 2 with one message, no traceback and nothing written. A mutant that happens to
be a valid suite reaches `run_suite`, which is stubbed out here (so nothing is trained) and counted
apart. The counts are printed (pytest -s) and the closing note of issue 20 quotes them."""

import tempfile
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from attractor_bench.cli import app

runner = CliRunner()
VALID = {
    "name": "fuzz", "seed": 0, "data": {"n_test": 50, "n_ood": 20, "ood": ["fashion_mnist"]},
    "models": {"m": {"preset": "baseline", "train": {"n_train": 64, "max_epochs": 1}},
               "p": {"preset": "pgd_at", "params": {"epochs": 1}}},
    "defence": {"name": "attractor", "tol": 0.001, "max_iter": 1},
    "rejector": {"threshold": 0.8},
    "attacks": [{"name": "fgsm", "eps": [0.1, "20/255"], "target": "pipeline"},
                {"name": "pgd", "label": "transfer", "eps": [0.1], "target": "transfer", "source": "m"}],
}
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**80, max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["..", "../x", "/etc", "", "a:b", "json:dumps",
                                                                     "os:system", "1/0", "nan", "-inf", "é", "\x00"]),
    st.text(max_size=20), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
COUNTS: Counter = Counter()


def _paths(node, prefix=()):
    """Every (path to a value) in a nested document."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield from _paths(v, (*prefix, k))


PATHS = [p for p in _paths(VALID) if p]


def _set(doc, path, value, delete=False):
    for k in path[:-1]:
        doc = doc[k]
    if delete and isinstance(doc, dict):
        del doc[path[-1]]
    else:
        doc[path[-1]] = value


@st.composite
def malformed(draw) -> bytes:
    doc = yaml.safe_load(yaml.safe_dump(VALID))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        path = draw(st.sampled_from(PATHS))
        try:
            if how == "add":
                _set(doc, (*path[:-1], draw(st.text(min_size=1, max_size=8))), draw(HOSTILE))
            else:
                _set(doc, path, draw(HOSTILE), delete=how == "delete")
        except (KeyError, IndexError, TypeError):  # an earlier mutation removed the path
            pass
    text = yaml.safe_dump(doc, allow_unicode=True).encode()
    if draw(st.booleans()):  # splice raw bytes into the text: broken YAML, bad UTF-8, tabs, aliases
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from([b"\xff\xfe", b"*x", b"&a ", b"\t", b": :", b"{", b"- ", b"\x00", b"!!python/object:os.system"])) + text[at:]
    return text


class _Reached(Exception):
    pass


def _reached(*args, **kwargs):
    raise _Reached


def _check(text: bytes, data_root: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setattr("attractor_bench.runner.run_suite", _reached)
        tmp = Path(tmp)
        suite = tmp / "suite.yaml"
        suite.write_bytes(text)
        result = runner.invoke(app, ["run", str(suite), "--data-root", str(data_root), "--cache-dir", str(tmp / "cache"),
                                     "--results-dir", str(tmp / "results"), "--no-progress", "--no-download"])
        if isinstance(result.exception, _Reached):
            COUNTS["valid"] += 1  # a mutant that is a valid suite: it got as far as running
        else:
            COUNTS["refused"] += 1
            assert result.exit_code in (1, 2), (text, result.output, result.exception)
            assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), (text, result.exception)
            assert "Error:" in result.output
        assert sorted(p.name for p in tmp.iterdir()) == ["suite.yaml"], "something was written"


FUZZ = dict(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=100, **FUZZ)
@given(text=malformed())
def test_malformed_suites_end_in_one_message(text, data_root):
    _check(text, data_root)


@pytest.mark.slow
@settings(max_examples=1000, **FUZZ)
@given(text=malformed())
def test_many_more_malformed_suites_end_in_one_message(text, data_root):
    _check(text, data_root)


def test_fuzz_counts():
    """Runs after the fuzz tests (file order): they tried inputs, and most were refused."""
    print(f"\nfuzz: {sum(COUNTS.values())} suites tried, {COUNTS['refused']} refused with one message, "
          f"{COUNTS['valid']} valid")
    assert COUNTS["refused"] >= 50
