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
