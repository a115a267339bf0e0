"""A suite's cells sequentially and with 2 worker processes, side by side in one go.

    python benchmarks/parallel_suite.py --data-root ../shared/datasets [--suite suites/smoke.yaml] [--rounds 1]

The suite's models are trained (or loaded) first, untimed, into a temporary cache. Then each
round runs `attractor-bench run SUITE --fresh` twice as separate processes, sequentially
(`--workers 1`) and with `--workers 2`, in alternating order, each recomputing every cell with the
models from the cache; wall time is measured around the whole command (process start, data,
loading the models, sending them to the workers, every cell, writing the results). The speedup is
the median sequential time over the median 2-worker time. `tables_identical` compares every
round's results.csv bytes with the first sequential run's. The last line is

    speedup_2_workers=<x> tables_identical=<true|false>

On a machine with 2 cores the sequential run already uses both (torch's intra-op threads), so
the speedup measures what process parallelism adds over thread parallelism there.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(suite: Path, data_root: Path, cache: Path, results: Path, *extra: str) -> float:
    cmd = [sys.executable, "-m", "attractor_bench.cli", "run", str(suite), "--data-root", str(data_root),
           "--cache-dir", str(cache), "--results-dir", str(results), "--no-progress", "--no-download", *extra]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--suite", type=Path, default=REPO / "suites" / "smoke.yaml")
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="parallel-suite-"))
    try:
        cache = tmp / "cache"
        warm = run(args.suite, args.data_root, cache, tmp / "warm")  # trains the models; not timed
        name = next((tmp / "warm").iterdir()).name
        cells = json.loads((tmp / "warm" / name / "run.json").read_text())["cells"]["total"]
        print(f"suite {args.suite} ({cells} cells); models trained or loaded in a first run of {warm:.1f} s")
        times: dict[int, list[float]] = {1: [], 2: []}
        tables = []
        for r in range(args.rounds):
            for workers in ((1, 2) if r % 2 == 0 else (2, 1)):
                out = tmp / f"r{r}-w{workers}"
                seconds = run(args.suite, args.data_root, cache, out, "--fresh", "--workers", str(workers))
                times[workers].append(seconds)
                tables.append((workers, (out / name / "results.csv").read_bytes()))
                print(f"round {r + 1}: --workers {workers}: {seconds:.1f} s")
        reference = next(t for w, t in tables if w == 1)
        identical = all(t == reference for _, t in tables)
        seq, par = statistics.median(times[1]), statistics.median(times[2])
        print(f"sequential {seq:.1f} s, 2 workers {par:.1f} s (medians over {args.rounds} round(s))")
        print(f"speedup_2_workers={seq / par:.2f} tables_identical={str(identical).lower()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
