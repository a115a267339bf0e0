"""The benchmark scripts run and end with the line their issue asks for (the figures themselves
are measured by running the scripts, not here)."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_jacobian_penalty_benchmark_last_line(data_root):
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "jacobian_penalty.py"), "--data-root", str(data_root),
         "--batch", "8", "--reps", "2", "--naive-reps", "1", "--draws", "5"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    last = out.strip().splitlines()[-1]
    m = re.fullmatch(r"exact_ratio=([\d.]+) estimator_ratio=([\d.]+) estimator_rel_err=([\d.]+) naive_ratio=([\d.]+)", last)
    assert m, last
    assert all(float(v) > 0 for v in m.groups())
