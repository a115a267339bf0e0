"""The benchmark scripts run and end with the line their issue asks for (the figures themselves
are measured by running the scripts, not here). Slow: each script runs in its own process with its
imports (~12-16 s each), so they run in CI's second step."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
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


@pytest.mark.slow
def test_attack_throughput_benchmark_last_line(data_root, tmp_path):
    """On the micro suite's attractor (trained into a temporary cache), a few images and steps: the
    registry's PGD and the plain torch loop give the same bits, and the last line has its four figures."""
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "attack_throughput.py"), "--data-root", str(data_root),
         "--cache-dir", str(tmp_path), "--suite", str(REPO / "suites" / "micro.yaml"), "--n", "40", "--steps", "3",
         "--square-iters", "5", "--rounds", "1"],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout
    assert "pgd_identical=true" in out, out
    last = out.strip().splitlines()[-1]
    m = re.fullmatch(r"pgd_art_over_torch=([\d.]+) pgd_flop_share=([\d.]+) square_query_share=([\d.]+) cell_seconds=([\d.]+)", last)
    assert m, last
    assert all(float(v) > 0 for v in m.groups())


@pytest.mark.slow
def test_autoattack_throughput_benchmark_last_line(data_root):
    """No cached model: the CNN and the MLP trained in seconds, a few images and steps; the levers'
    before and after give the same bits, and the last line has its eight figures."""
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "autoattack_throughput.py"), "--data-root", str(data_root),
         "--n", "8", "--train-steps", "5", "--pgd-n", "300", "--pgd-steps", "2", "--reps", "1"],
        capture_output=True, text=True, timeout=900, check=True,
    ).stdout
    assert re.search(r"after \(sum\): .* the same bits at both: true", out) and out.count("the same bits: true") == 2, out
    last = out.strip().splitlines()[-1]
    names = ("aa_cnn_images_per_s", "aa_cnn_flop_share", "aa_mlp_images_per_s", "aa_mlp_flop_share", "pgd_share_256",
             "pgd_share_1000", "chain_step_ratio", "pgd_forward_ratio")
    m = re.fullmatch(" ".join(rf"{n}=([\d.]+)" for n in names), last)
    assert m, last
    assert all(float(v) > 0 for v in m.groups())


@pytest.mark.slow
def test_autoattack_second_seed_benchmark_last_line(data_root):
    """The zoo's pgd_at on 4 images at L-inf 0.3: both seeds timed, the second on what the first left robust."""
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "autoattack_second_seed.py"), "--data-root", str(data_root),
         "--n", "4", "--eps", "0.3"],
        capture_output=True, text=True, timeout=900, check=True,
    ).stdout
    m = re.search(r"pgd_at L-inf 0.3: 4 images, (\d+) left robust by seed 0 \(or wrong clean\), seed 1 broke (\d+);", out)
    assert m and int(m[2]) <= int(m[1]) <= 4, out
    assert re.fullmatch(r"second_seed_cost_pgd_at_0.3=[\d.]+", out.strip().splitlines()[-1]), out
