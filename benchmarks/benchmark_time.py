"""How long `benchmark` takes for an MLP-sized outside model through the whole protocol (issue 39: at most
30 minutes on 2 CPU cores at the leaderboard's n). A script, not a test.

    PYTHONPATH=examples/plugins python benchmarks/benchmark_time.py [--model M] [--n 1000] [--cache-dir DIR]

It benchmarks `--model` (default `tiny_plugins:small_mlp`, 784-64-10, trained in its builder; or a zoo name
such as `pgd_at`, an MLP trained adversarially) under the protocol (attractor_bench/protocol.py), both parts,
with its transfer source `mlp` from the zoo (or the cache; trained if neither has it, which the printed times
then include), and prints the wall time of the whole call, of the classification run, of the model's training
or loading, its numbers, and the seconds of the cells per attack. The cascade attacks with each attack only
what the cheaper ones left robust, so the time grows with the model's robustness: a weak model's figure is not
a robust one's. A first run on an empty cell store is the figure that counts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from attractor_bench import benchmark


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny_plugins:small_mlp", help="a builder module:callable or a zoo name")
    ap.add_argument("--n", type=int, default=None, help="test images (default: the protocol's)")
    ap.add_argument("--cache-dir", default=None, help="model and cell cache (default: a new temporary folder)")
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        name = "timed_" + args.model.split(":")[-1]
        card = benchmark(args.model, name=None if ":" not in args.model else name, n=args.n, results_dir=Path(tmp) / "res",
                         cache_dir=args.cache_dir or Path(tmp) / "cache", data_root=args.data_root, download=False)
        wall = time.perf_counter() - t0
        run = json.loads((Path(card["folder"]) / "run.json").read_text())
    train = {m: v.get("seconds_train_or_load") for m, v in run["models"].items()}
    per_attack: dict[str, float] = {}
    for c in run.get("cell_seconds", []):
        if c["model"] == card["name"]:
            per_attack[c["attack"]] = round(per_attack.get(c["attack"], 0.0) + c["seconds"], 1)
    print(json.dumps({"model": args.model, "n": card["n"], "protocol": card["protocol"], "wall_seconds": round(wall, 1),
                      "classification_run_wall_seconds": run.get("wall_seconds"), "train_or_load_seconds": train,
                      "cells": run.get("cells"), "cell_seconds_by_attack": per_attack,
                      **{k: card.get(k) for k in ("clean", "worst_case_0.1", "worst_case_0.3", "ood_rejector",
                                                  "ood_robust_lowest")}}, indent=1))


if __name__ == "__main__":
    main()
