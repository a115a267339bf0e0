"""The stochastic model's evaluation time with its weights as trained and with subnormals set to zero.

    python benchmarks/stochastic_subnormals.py --data-root ../shared/datasets [--n 200] [--rounds 3]

Trains the `stochastic` recipe (models/stochastic.py, its registry parameters, seed 0) in this
process without the final flush (`fit_stochastic(..., flush=False)`; about 3 minutes on 2 idle
cores; `--max-epochs` shortens it, which leaves fewer subnormals), counts its subnormal
parameters, then times on the first `--n` MNIST test images the work an attack does on it (one
EoT gradient: `eot_samples` forward and backward passes through the loss to the input, as
`attractor_bench.classifier.EoTClassifier` takes it) with those weights and with a copy whose
subnormals are zero (`flush_subnormals_`, what the recipe now does after training), alternating
for `--rounds` rounds (medians), and checks that the two give the same predictions on the test
images under the same random draws.

The last line is

    subnormals=<count> before_seconds=<a> after_seconds=<b> speedup=<a/b> same_predictions=<bool>
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch

from attractor_bench import data
from attractor_bench.cache import Context
from attractor_bench.determinism import deterministic
from attractor_bench.models import MODELS
from attractor_bench.models.stochastic import fit_stochastic, flush_subnormals_


def eot_gradient_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, samples: int) -> float:
    t0 = time.perf_counter()
    for _ in range(samples):
        xi = x.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(model(xi), y, reduction="sum").backward()
    return time.perf_counter() - t0


def predictions(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    torch.manual_seed(0)
    with torch.no_grad():
        return model(x).argmax(1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-epochs", type=int, default=None)
    args = ap.parse_args()
    recipe = MODELS["stochastic"]
    params, _ = recipe.split({} if args.max_epochs is None else {"max_epochs": args.max_epochs})
    train, val = data.mnist_train_val(args.data_root, download=False)
    test = data.load("mnist", "test", args.data_root, download=False).head(args.n)
    torch.manual_seed(0)
    model = recipe.make(**params)
    t0 = time.perf_counter()
    with deterministic():
        fit_stochastic(model, Context(train, val, seed=0), **params, flush=False)
    print(f"trained in {time.perf_counter() - t0:.0f} s ({params})")
    model.eval()
    flushed = copy.deepcopy(model)
    count = flush_subnormals_(flushed)
    x, y = torch.from_numpy(test.x), torch.from_numpy(test.y)
    before, after = [], []
    for _ in range(args.rounds):
        before.append(eot_gradient_seconds(model, x, y, model.eot_samples))
        after.append(eot_gradient_seconds(flushed, x, y, model.eot_samples))
    a, b = statistics.median(before), statistics.median(after)
    same = bool((predictions(model, x) == predictions(flushed, x)).all())
    print(f"one EoT gradient ({model.eot_samples} samples) on {len(x)} images: {a:.3f} s as trained, {b:.3f} s flushed")
    print(f"subnormals={count} before_seconds={a:.3f} after_seconds={b:.3f} speedup={a / b:.2f} same_predictions={same}")


if __name__ == "__main__":
    main()
