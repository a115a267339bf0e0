"""What standard AutoAttack's second seed (issue 41) costs beside its first run, on the zoo's robust models.

    python benchmarks/autoattack_second_seed.py --data-root ../shared/datasets [--models pgd_at cnn_at]
        [--n 100] [--eps 0.1 0.3]

The registry's `autoattack_standard` (attacks/autoattack_standard.py) runs as in a leaderboard cell: AutoAttack's
standard evaluation with seed 0 on the first `--n` MNIST test images, then, on the images it left robust, the same
evaluation with seed 1. A cell runs the second only where the margin is thin (`margin_is_thin`: AutoAttack's attacks
after APGD-CE broke more than 0.2% of the images); here it always runs, so that its cost is measured where a cell
would skip it too (the line says whether the cell would run it). Per model and eps: images, robust after the first
seed, the images the second broke, each run's seconds. The last line is

    second_seed_cost_<model>_<eps>=<second run's seconds / first run's> ...

The images the second seed broke in the committed leaderboard are its runs' `autoattack_second_seed` findings
(run.json); this script measures what the second run adds to a cell's time, which a cell does not record.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from attractor_bench import load_model, make_classifier
from attractor_bench.attacks import ATTACKS
from attractor_bench.attacks.autoattack_standard import margin_is_thin
from attractor_bench.data import load
from attractor_bench.determinism import deterministic


def second_seed_line(name: str, net: torch.nn.Module, x: np.ndarray, y: np.ndarray, eps: float) -> float:
    """Both seeds of standard AutoAttack on (x, y), timed apart; return the second's seconds over the first's."""
    attack = ATTACKS["autoattack_standard"].build(make_classifier(net), eps, seed=0)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    t0 = time.perf_counter()
    _, first = attack._run(attack.attack, xt, yt)  # the wrapper's one AutoAttack run (generate runs it once or twice)
    t1 = time.perf_counter() - t0
    left = np.flatnonzero(first["aa_broken_by"] < 0)
    attack.attack.seed = attack.seed + 1  # as generate does: the seed its attacks take before each run
    t0 = time.perf_counter()
    broke = 0
    if len(left):
        _, again = attack._run(attack.attack, xt[left], yt[left])
        broke = int((again["aa_broken_by"] >= 0).sum())
    t2 = time.perf_counter() - t0
    thin = margin_is_thin(first["aa_broken_by"])
    print(f"{name} L-inf {eps:g}: {len(x)} images, {len(left)} left robust by seed 0 (or wrong clean), seed 1 broke "
          f"{broke}; seed 0 {t1:.1f} s, seed 1 {t2:.1f} s (x{t2 / t1:.2f}); a cell would run seed 1: "
          f"{str(thin).lower()} (the margin is {'thin' if thin else 'not thin'})", flush=True)
    return t2 / t1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--models", nargs="+", default=["pgd_at"], help="zoo models (load_model names), undefended")
    p.add_argument("--n", type=int, default=100, help="the first N MNIST test images")
    p.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.3])
    args = p.parse_args()
    with deterministic():
        test = load("mnist", "test", args.data_root, download=False)
        x, y = test.x[:args.n], test.y[:args.n].astype(np.int64)
        print(f"{torch.get_num_threads()} torch threads")
        costs = {}
        for name in args.models:
            net = load_model(name).eval()
            for eps in args.eps:
                costs[f"{name}_{eps:g}"] = second_seed_line(name, net, x, y, eps)
    print(" ".join(f"second_seed_cost_{k}={v:.3f}" for k, v in costs.items()))


if __name__ == "__main__":
    main()
