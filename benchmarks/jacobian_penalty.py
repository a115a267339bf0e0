"""Cost of the Jacobian penalty L_eigen: one training step on the same batch, side by side.

    python benchmarks/jacobian_penalty.py --data-root ../shared/datasets [--batch 64] [--reps 20]

One training step = forward, loss, backward, Adam step on the full 784-500-300-300-300-500-784
network, on the same batch of MNIST training images, for:

- baseline: a = (0.99, 0, 0.01), no penalty;
- naive: the exact penalty from full Jacobians, vmap(jacrev(G)) (a 784x784 matrix per sample);
- exact: the project's exact penalty (`jacobian_sq_norm_exact`, factored at the bottleneck);
- estimator: one random projection, tangents propagated beside the shared forward pass.

The methods run in interleaved rounds (each round times every method once) so that a slow phase
of the machine hits them all alike; each figure is the median over rounds. The estimator's
relative error is |mean of 20 one-projection estimates - exact| / exact for the batch-mean of
||J||_F^2. The last line is

    exact_ratio=<x> estimator_ratio=<y> estimator_rel_err=<z> naive_ratio=<w>

with ratios = step time / baseline step time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from attractor_bench.data import mnist_train_val
from attractor_bench.losses import (
    PenaltyMethod, attractor_loss, jacobian_sq_norm_estimate, jacobian_sq_norm_exact, jacobian_sq_norm_naive,
)
from attractor_bench.models import SIZES, AttractorNet
from attractor_bench.training import make_optimizer

WEIGHTS = (0.988, 0.002, 0.01)


def step_fn(method: str, model: AttractorNet, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor):
    chain = model.chain()

    def step() -> None:
        if method == "baseline":
            loss, _ = attractor_loss(chain, model.head, x, y, (0.99, 0.0, 0.01))
        elif method == "naive":
            recon, feats, _ = chain(x)
            loss = (WEIGHTS[0] * F.mse_loss(recon, x) + WEIGHTS[2] * F.cross_entropy(model.head(feats), y)
                    + WEIGHTS[1] * 0.5 * jacobian_sq_norm_naive(chain, x).mean())
        else:
            penalty = PenaltyMethod.EXACT if method == "exact" else PenaltyMethod.ESTIMATE
            loss, _ = attractor_loss(chain, model.head, x, y, WEIGHTS, penalty, n_projections=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def exact_macs_per_sample() -> dict[str, int]:
    """Multiply-accumulates per sample of the forward computations (backward costs about twice as much)."""
    d0, h1, h2, h3, h4, h5, d6 = SIZES
    forward = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    return {"network forward": forward, "estimator tangents (1 projection)": forward}


def exact_macs(m: int, k: int) -> int:
    """MACs per sample of `jacobian_sq_norm_exact` split at hidden layer k (0-based) keeping m units."""
    n, n_layers = SIZES, len(SIZES) - 1  # layer i maps n[i] -> n[i+1]
    a = sum(m * n[i + 1] * n[i] for i in range(k - 1, 0, -1)) if k > 0 else 0  # rows of A down to layer 1
    gram = m * n[1] * n[1] + m * m * n[1] if k > 0 else 0  # a (W_0 W_0^T) a^T
    b = sum(n[i + 1] * n[i] * m for i in range(k + 2, n_layers))  # columns of B up to the output
    return a + gram + b + m * m * n[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--reps", type=int, default=20, help="rounds for the fast methods")
    p.add_argument("--naive-reps", type=int, default=3, help="rounds that include the naive method (about 5 s each)")
    p.add_argument("--draws", type=int, default=20, help="estimator draws for the relative error")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    train, _ = mnist_train_val(args.data_root, download=False)
    x = torch.from_numpy(train.x[: args.batch]).flatten(1).to(args.device)
    y = torch.from_numpy(train.y[: args.batch]).to(args.device)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, batch {args.batch}")

    methods = ["baseline", "naive", "exact", "estimator"]
    steps = {}
    for m in methods:  # each method trains its own copy from the same initial weights
        torch.manual_seed(0)
        model = AttractorNet().to(args.device)
        steps[m] = step_fn(m, model, make_optimizer(list(model.parameters()), 5e-4), x, y)  # training's Adam
        steps[m]()  # warm-up
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    times = {m: [] for m in methods}
    for r in range(args.reps):
        for m in methods:
            if m == "naive" and r >= args.naive_reps:
                continue
            sync()
            t0 = time.perf_counter()
            steps[m]()
            sync()
            times[m].append(time.perf_counter() - t0)
    med = {m: statistics.median(t) for m, t in times.items()}
    for m in methods:
        print(f"{m:>10}: {med[m] * 1e3:9.2f} ms/step (median of {len(times[m])}), {med[m] / med['baseline']:7.2f}x baseline")

    macs = exact_macs_per_sample()
    with torch.no_grad():  # the split the exact method picks for this batch, at the initial weights
        derivs = AttractorNet().to(args.device).chain()(x)[2]
    counts = [int((d != 0).sum(1).max()) for d in derivs[:-1]]
    k = min(range(len(counts)), key=lambda i: (counts[i], i))
    macs["exact penalty"] = exact_macs(counts[k], k)
    print(f"largest number of active units per hidden layer in the batch: {counts}; split at hidden layer {k + 1}, "
          f"m = {counts[k]} (dense, all 300 units: {exact_macs(300, 1) / 1e6:.0f} M MACs per sample)")
    for name, v in macs.items():
        print(f"MACs per sample, {name}: {v / 1e6:.1f} M")
    # forward + backward ~ 3x the forward's multiply-accumulates; 2 FLOPs per MAC
    step_flop = {"baseline": 6 * macs["network forward"] * args.batch,
                 "exact": 6 * (macs["network forward"] + macs["exact penalty"]) * args.batch,
                 "estimator": 6 * 2 * macs["network forward"] * args.batch}
    for m, f in step_flop.items():
        print(f"{m:>10}: {f / 1e9:.2f} GFLOP/step, achieved {f / med[m] / 1e9:.1f} GFLOP/s")
    a = torch.randn(2048, 2048, device=args.device)
    gemm = []
    for _ in range(5):
        sync()
        t0 = time.perf_counter()
        a @ a
        sync()
        gemm.append(time.perf_counter() - t0)
    print(f"reference: a 2048^3 matmul runs at {2 * 2048**3 / min(gemm) / 1e9:.1f} GFLOP/s on this machine")
    print(f"FLOP ratio exact/baseline {step_flop['exact'] / step_flop['baseline']:.0f} "
          f"(the step-time ratio if both ran at the same FLOP rate)")

    model = AttractorNet().to(args.device)
    chain = model.chain()
    with torch.no_grad():
        exact = jacobian_sq_norm_exact(chain, chain(x)[2]).mean().item()
        draws = [jacobian_sq_norm_estimate(chain, x, 1).mean().item() for _ in range(args.draws)]
    rel_err = abs(statistics.mean(draws) - exact) / exact
    spread = statistics.stdev(draws) / exact
    print(f"batch-mean ||J||_F^2: exact {exact:.4f}, mean of {args.draws} one-projection estimates "
          f"{statistics.mean(draws):.4f} (one draw's relative std {spread:.3f})")
    print(f"exact_ratio={med['exact'] / med['baseline']:.1f} estimator_ratio={med['estimator'] / med['baseline']:.2f} "
          f"estimator_rel_err={rel_err:.4f} naive_ratio={med['naive'] / med['baseline']:.1f}")


if __name__ == "__main__":
    main()
