"""A first probe of `attractor_at` (issue 19, part 2) on the validation split, never the test set:
the attractor network trained adversarially through its own pipeline, measured against the three
goals. A prototype to choose the recipe before it becomes a preset (not a preset, not on the
leaderboard; its numbers are validation numbers).

    python scripts/attractor_at_probe.py --data-root ../shared/datasets --epochs 10

Training (each choice said here): the AttractorNet (784-500-300-300-300-500-784, 10-way head on the
bottleneck) from a random start, no layer-wise pre-training; Adam lr 1e-3, batch 128, on the 50,000
training images. Each batch is attacked by PGD (10 steps, random start; at eps 0.3 steps of 0.075,
the budget `pgd_at` uses, scaled with eps while it ramps) on the cross-entropy of the defended
pipeline x -> G(x) (one iteration, clipped to [0, 1], as the suites' defence) -> head; eps ramps
linearly to --eps over the first half of the epochs (`pgd_at` ramps over 5). Loss: cross-entropy of
the pipeline on the attacked images, plus --rec-weight times the summed squared error between
G(attacked image), clipped, and the *clean* image (the attacked image is pulled back to its clean
image: the attractor property asked of every point of the eps-ball, which also keeps the Pearson
similarity of attacked digits high), plus the same for G(clean image), unclipped. No
L_eigen (its exact form is too slow on 50,000 images; the reconstruction of attacked points asks for
the same basin directly), no outlier exposure (no OOD data in training).

Measured on the first --n-val validation images (MNIST training images 50,000+) at T = 0.8:
clean accuracy and acceptance; accuracy under PGD (40 steps of eps/10 after a random start, on
the pipeline's cross-entropy) and under the project's rejection-aware attack (50 steps, through the
pipeline with the rejector in the loss); end to end (accepted and correct under both); and the
OOD AUROC of the similarity against the first --n-val Fashion-MNIST *training* images (the test
images are the suites' OOD set), clean and with the OOD images attacked by the rejection-aware
attack to be accepted (ID clean).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from attractor_bench.attacks.rejection_aware import RejectionAwarePGD
from attractor_bench.classifier import make_classifier
from attractor_bench.data import load, mnist_train_val
from attractor_bench.defences import AttractorDefence, PearsonRejector, pearson
from attractor_bench.metrics import auroc
from attractor_bench.models import AttractorNet
from attractor_bench.models.mlp import pgd  # Madry et al.'s PGD with a random start, on any module's cross-entropy


def pipeline(model: AttractorNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(G(x) clipped to [0, 1], the head's logits there): one iteration of the defence."""
    fixed = model.reconstruct(x).clamp(0, 1)
    return fixed, model(fixed)


class Pipeline(nn.Module):
    """The defended classifier as a module (logits at one iteration of the defence), for `pgd`."""

    def __init__(self, model: AttractorNet):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pipeline(self.model, x)[1]


def train(model: AttractorNet, x: torch.Tensor, y: torch.Tensor, args, gen: torch.Generator) -> None:
    opt, attacked = torch.optim.Adam(model.parameters(), lr=1e-3), Pipeline(model)
    model.train()
    ramp = max(1, args.epochs // 2)
    for epoch in range(1, args.epochs + 1):
        t0, eps = time.perf_counter(), args.eps * min(1.0, epoch / ramp)
        order = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x), 128):
            xb, yb = x[order[s:s + 128]], y[order[s:s + 128]]
            xa = pgd(attacked, xb, yb, eps, 10, 0.075 * eps / args.eps, gen)
            fixed_a, logits_a = pipeline(model, xa)
            rec = (fixed_a - xb).pow(2).sum(1).mean() + (model.reconstruct(xb) - xb).pow(2).sum(1).mean()
            loss = nn.functional.cross_entropy(logits_a, yb) + args.rec_weight * rec
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        print(f"epoch {epoch}: eps {eps:.3f}, last loss {loss.item():.3f}, {time.perf_counter() - t0:.0f} s", flush=True)
    model.eval()


@torch.no_grad()
def measure(model: AttractorNet, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fixed, logits = pipeline(model, torch.from_numpy(x))
    return logits.argmax(1).numpy(), pearson(fixed, torch.from_numpy(x)).numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--eps", type=float, default=0.3, help="training eps (L-inf)")
    p.add_argument("--rec-weight", type=float, default=0.1)
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--n-train", type=int, default=None, help="the first N training images (default all 50,000)")
    p.add_argument("--threshold", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    tr, val = mnist_train_val(args.data_root, download=False)
    model = AttractorNet()
    t0 = time.perf_counter()
    train(model, torch.from_numpy(tr.x[: args.n_train]).flatten(1), torch.from_numpy(tr.y[: args.n_train]), args, gen)
    train_s = time.perf_counter() - t0
    xv, yv = val.x[: args.n_val].reshape(args.n_val, -1), val.y[: args.n_val]
    ood = load("fashion_mnist", "train", args.data_root, download=False).x[: args.n_val].reshape(args.n_val, -1)
    defence = AttractorDefence(model, tol=1e-3, max_iter=1)
    rejector = PearsonRejector(defence, threshold=args.threshold)
    clf = make_classifier(model, defence)
    pred, sim = measure(model, xv)
    _, sim_ood = measure(model, ood)
    print(f"\nvalidation: MNIST training images 50,000..{50_000 + args.n_val - 1}; OOD: the first {args.n_val} "
          f"Fashion-MNIST training images; T = {args.threshold}; trained {args.epochs} epochs at eps {args.eps}, "
          f"rec weight {args.rec_weight}, in {train_s:.0f} s")
    print(f"clean: accuracy {100 * (pred == yv).mean():.2f}, accepted {100 * (sim >= args.threshold).mean():.2f}, "
          f"end to end {100 * ((pred == yv) & (sim >= args.threshold)).mean():.2f}, "
          f"OOD AUROC {100 * auroc(sim, sim_ood):.2f}")
    print("| eps | PGD-40 accuracy | rejection-aware: accuracy | accepted | end to end under both | "
          "OOD AUROC, OOD attacked to be accepted |")
    print("|---|---|---|---|---|---|")
    for eps in (0.1, 0.3):
        xt, yt = torch.from_numpy(xv), torch.from_numpy(yv)
        x_pgd = pgd(Pipeline(model).eval(), xt, yt, eps, 40, eps / 10, gen).numpy()
        ra = RejectionAwarePGD(clf, rejector, eps=eps)
        x_ra, x_ood = ra.generate(xv, yv), ra.generate(ood)
        pred_p, sim_p = measure(model, x_pgd)
        pred_r, sim_r = measure(model, x_ra)
        _, sim_oa = measure(model, x_ood)
        e2e = (pred_p == yv) & (sim_p >= args.threshold) & (pred_r == yv) & (sim_r >= args.threshold)
        print(f"| {eps} | {100 * (pred_p == yv).mean():.2f} | {100 * (pred_r == yv).mean():.2f} | "
              f"{100 * (sim_r >= args.threshold).mean():.2f} | {100 * e2e.mean():.2f} | {100 * auroc(sim, sim_oa):.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
