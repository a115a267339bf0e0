"""Fill zoo/ from a model cache: the weights of the leaderboard's models as a suite's run trained them
(attractor_bench/zoo_export.py), safetensors plus zoo/manifest.json, within the 64 MiB budget.

    attractor-bench train suites/leaderboard.yaml suites/leaderboard_attractor_at.yaml suites/leaderboard_sota.yaml
    python scripts/zoo_export.py --cache-dir ~/.cache/attractor-bench [--data-root DIR] [NAME ...]
"""

from __future__ import annotations

import argparse
import time

from attractor_bench.zoo_export import export


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="leaderboard model names (default: every one)")
    ap.add_argument("--cache-dir", default=None, help="the model cache the runs used (default: $ATTRACTOR_BENCH_CACHE)")
    ap.add_argument("--data-root", default=None, help="the datasets (default: $ATTRACTOR_BENCH_DATA)")
    ap.add_argument("--zoo", default=None, help="the zoo folder (default: zoo/ of this checkout)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    doc = export(args.names or None, args.cache_dir, args.data_root, path=args.zoo)
    for name, m in doc["models"].items():
        run = m["run"] or {}
        print(f"{name}: {m['file']} sha256 {m['sha256'][:16]}... weights {m['weights']} "
              f"(evaluated by {run.get('suite', 'no committed run')}, protocol {run.get('protocol')})")
    print(f"{len({n['file'] for n in doc['networks'].values()})} files for {len(doc['networks'])} networks, {doc['bytes'] / 2**20:.1f} MiB, in {time.perf_counter() - t0:.1f} s.")


if __name__ == "__main__":
    main()
