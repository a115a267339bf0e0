"""Where the fixed-point iteration takes MNIST test images: the class histogram of the head's
predictions at the fixed point, and how far apart the fixed points are.

    python scripts/fixed_point_census.py --data-root ../shared/datasets [--n 2000] [--presets attractor baseline]

Uses the leaderboard's models of those names (`attractor_bench.load_model`: from the zoo, else trained on first use).
"""

import argparse

import numpy as np
import torch

from attractor_bench.api import load_model
from attractor_bench.data import load
from attractor_bench.defenses import AttractorDefence


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--n", type=int, default=2000, help="first N MNIST test images")
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--max-iter", type=int, default=50)
    p.add_argument("--presets", nargs="+", default=["attractor", "baseline"])
    args = p.parse_args()
    test = load("mnist", "test", args.data_root).head(args.n)
    print(f"first {args.n} MNIST test images; labels per class: {np.bincount(test.y, minlength=10).tolist()}")
    for preset in args.presets:
        model = load_model(preset, data_root=args.data_root, cache_dir=args.cache_dir)
        defence = AttractorDefence(model, tol=args.tol, max_iter=args.max_iter)
        with torch.no_grad():
            fixed, n_iter = defence.iterate(torch.from_numpy(test.x))
            pred = model(fixed).argmax(1).numpy()
        flat = fixed.reshape(len(fixed), -1)
        spread = (flat - flat.mean(0)).abs().max().item()
        print(f"{preset}: predictions per class at the fixed point {np.bincount(pred, minlength=10).tolist()}; "
              f"mean iterations {n_iter.float().mean():.1f}; max |fixed point - mean fixed point| = {spread:.3f}")


if __name__ == "__main__":
    main()
