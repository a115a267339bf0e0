"""Fill zoo/ from a model cache: the weights of the leaderboard's models as a suite's run trained them
(attractor_bench/zoo_export.py), safetensors plus zoo/manifest.json, within the 64 MiB budget.

    attractor-bench train suites/leaderboard.yaml suites/leaderboard_attractor_at.yaml suites/leaderboard_sota.yaml
    python scripts/zoo_export.py --cache-dir ~/.cache/attractor-bench [--data-root DIR] [NAME ...]
    python scripts/zoo_export.py --runs-only   # after a run is regenerated: each model's `run`, no cache needed
"""

from __future__ import annotations

import argparse
import time

from attractor_bench.zoo_export import export, refresh_runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="leaderboard model names (default: every one)")
    ap.add_argument("--cache-dir", default=None, help="the model cache the runs used (default: $ATTRACTOR_BENCH_CACHE)")
    ap.add_argument("--data-root", default=None, help="the datasets (default: $ATTRACTOR_BENCH_DATA)")
    ap.add_argument("--zoo", default=None, help="the zoo folder (default: zoo/ of this checkout)")
    ap.add_argument("--runs-only", action="store_true", help="only point each model's `run` at the newest committed "
                    "run that evaluated its weights (the weights and files stay as they are; no cache needed)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.runs_only and args.names:
        ap.error("--runs-only refreshes every model; give no names")
    doc = refresh_runs(args.zoo) if args.runs_only else export(args.names or None, args.cache_dir, args.data_root, path=args.zoo)
    for name, m in doc["models"].items():
        run = m["run"] or {}
        print(f"{name}: {m['file']} sha256 {m['sha256'][:16]}... weights {m['weights']} "
              f"(evaluated by {run.get('suite', 'no committed run')}, protocol {run.get('protocol')})")
    print(f"{len({n['file'] for n in doc['networks'].values()})} files for {len(doc['networks'])} networks, {doc['bytes'] / 2**20:.1f} MiB, in {time.perf_counter() - t0:.1f} s.")


if __name__ == "__main__":
    main()
