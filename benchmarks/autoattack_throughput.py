"""Standard AutoAttack's throughput against this machine's matmul peak, and the attack levers of
issue 38 before and after, side by side in one run.

    python benchmarks/autoattack_throughput.py --data-root ../shared/datasets [--n 48] [--eps 0.3]
        [--zoo] [--profile N] [--aa-only]

No model from a cache: Madry et al.'s CNN (`models/cnn.py`) and the MLP (`models/mlp.py`) are
trained here for `--train-steps` Adam steps of 128 MNIST training images (seconds; plainly, not
adversarially), then:

- **AutoAttack.** The registry's `autoattack_standard` (the authors' code: APGD-CE, APGD-T, FAB-T,
  Square) at L-inf `--eps` on the first `--n` MNIST test images: images per second, and the FLOP
  rate its counted passes imply (forward passes times the forward's FLOP per image, backward
  passes times the backward-to-input's, both counted by `torch.utils.flop_counter`) as a share
  of the machine's matmul peak (best of ten 2048^3 float32 matmuls, measured here). On a
  non-robust model at eps 0.3 APGD-CE breaks almost every image and the later attacks have
  little left: the share is the rate of its passes, the images per second a bound for robust models.
- **Levers, before and after** (registry PGD, `--pgd-steps` steps at eps 0.3, on an untrained
  attractor network behind its defence, `--pgd-n` images):
  - summed loss: the registry's PGD at a batch of 256 and of 1,000 (FLOP share of each, and
    whether the two give the same bits), and the same with the earlier batch-mean loss;
  - `Chain` without derivative masks: one PGD step's forward and backward pass with the masks
    built (before) and without (after), the same bits;
  - PGD without ART's closing success-rate passes: ART's ProjectedGradientDescent against the
    registry's, forward passes counted and seconds, the same bits.

With `--zoo`, AutoAttack runs on the zoo's robust `cnn_at` and `pgd_at` (an MLP) instead, where all four
of its attacks run on most images (the leaderboard's case); `--profile N` adds torch's operator profile
of AutoAttack on N images of the CNN (the share of self CPU time in matrix products and convolutions, the
top operators; not of the MLP, whose millions of small operators filled 24 GB with the profiler's events);
`--aa-only` skips the levers.

The last line is

    aa_cnn_images_per_s=<> aa_cnn_flop_share=<> aa_mlp_images_per_s=<> aa_mlp_flop_share=<> pgd_share_256=<> pgd_share_1000=<> chain_step_ratio=<> pgd_forward_ratio=<>

`chain_step_ratio` is the step's time with masks over without (above 1: the masks cost that
much), `pgd_forward_ratio` ART's forward passes over the registry's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from art.attacks.evasion import ProjectedGradientDescent
from torch.profiler import ProfilerActivity, profile

from attack_throughput import forward_flops, matmul_peak, seconds, step_flops  # noqa: E402 (this folder's script)
from attractor_bench import AttractorDefence, load_model, make_classifier
from attractor_bench.attacks import ATTACKS
from attractor_bench.data import load, mnist_train_val
from attractor_bench.determinism import deterministic
from attractor_bench.models import AttractorNet
from attractor_bench.models.cnn import MadryCNN
from attractor_bench.models.mlp import MLP


def quick_train(net: torch.nn.Module, x: np.ndarray, y: np.ndarray, steps: int, seed: int = 0) -> torch.nn.Module:
    """`steps` Adam steps (lr 1e-3) on batches of 128 training images: a model that classifies MNIST."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (128,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
        opt.step()
    return net.eval()


def counted_flops(net: torch.nn.Module, f, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(forward, forward and backward to the input) FLOP per image of `f`, the weights of `net`
    frozen as during an attack, the input through a view (the flop counter's module hooks refuse
    a leaf tensor as a module's input under autograd.grad)."""
    params = [q for q in net.parameters() if q.requires_grad]
    for q in params:
        q.requires_grad_(False)
    g = lambda t: f(t.view_as(t))  # noqa: E731
    try:
        return forward_flops(g, x), step_flops(g, x, y)
    finally:
        for q in params:
            q.requires_grad_(True)


def autoattack_line(name: str, net, x, y, eps: float, peak: float) -> tuple[float, float]:
    """Standard AutoAttack on `net`: (images/s, FLOP share of the peak)."""
    clf = make_classifier(net)
    f = lambda t: net(t)  # noqa: E731
    fwd, step = counted_flops(net, f, x[:16], y[:16])
    acc = float((clf.predict(x).argmax(1) == y).mean())
    attack = ATTACKS["autoattack_standard"].build(clf, eps, seed=0)
    before = dict(clf.passes)
    t, adv = seconds(attack.generate, x, y)
    passes = {k: clf.passes[k] - before[k] for k in before}  # the attack's own passes
    robust = float((clf.predict(adv).argmax(1) == y).mean())
    flops = passes["forward"] * fwd + passes["backward"] * (step - fwd)
    share = flops / t / peak
    print(f"AutoAttack standard, {name}: clean {acc:.1%}, robust {robust:.1%} at eps {eps}; {len(x)} images in {t:.2f} s = "
          f"{len(x) / t:.1f} images/s; {passes['forward']} forward, {passes['backward']} backward passes; "
          f"{flops / t / 1e9:.1f} GFLOP/s = {share:.3f} of the peak")
    return len(x) / t, share


def pgd(clf, x, y, eps: float, steps: int, batch: int, art: bool = False):
    np.random.seed(0)
    if art:
        attack = ProjectedGradientDescent(clf, eps=eps, eps_step=eps / 4, max_iter=steps, num_random_init=1,
                                          batch_size=batch, verbose=False)
    else:
        attack = ATTACKS["pgd"].build(clf, eps, max_iter=steps, batch_size=batch)
    before = clf.passes["forward"]
    t, adv = seconds(attack.generate, x, y)
    return t, adv, clf.passes["forward"] - before


def summed_loss_lines(clf, x, y, steps: int, flops: float, peak: float) -> tuple[float, float]:
    """PGD at batches of 256 and 1,000, with the summed loss (now) and the batch mean (before)."""
    shares, out = {}, {}
    for reduction in ("mean", "sum"):
        clf._loss.reduction = reduction
        for batch in (256, 1000):
            t, out[reduction, batch], _ = pgd(clf, x, y, 0.3, steps, batch)
            shares[reduction, batch] = flops * len(x) * steps / t / peak
        same = np.array_equal(out[reduction, 256], out[reduction, 1000])
        print(f"PGD, {'before (batch mean)' if reduction == 'mean' else 'after (sum)'}: FLOP share at batch 256 "
              f"{shares[reduction, 256]:.3f}, at 1000 {shares[reduction, 1000]:.3f}; the same bits at both: {str(same).lower()}")
    clf._loss.reduction = "sum"
    return shares["sum", 256], shares["sum", 1000]


def chain_line(net, d, x, y, reps: int) -> float:
    """One PGD step's pass (defence, model, backward to the input) with the masks built and without."""
    chain, times, grads = net.chain, {}, {}
    for derivatives in (True, False):
        net.chain = lambda: _Masks(chain(), derivatives)  # noqa: B023
        xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()

        def step():
            xg = xt.clone().requires_grad_(True)
            torch.nn.functional.cross_entropy(net(d.forward(xg)[0]), yt, reduction="sum").backward()
            return xg.grad

        step()
        times[derivatives] = min(seconds(step)[0] for _ in range(reps))
        grads[derivatives] = step()
    del net.chain
    same = torch.equal(grads[True], grads[False])
    print(f"Chain: a PGD step on {len(x)} images {times[True] * 1e3:.1f} ms with derivative masks (before), "
          f"{times[False] * 1e3:.1f} ms without (after); the same bits: {str(same).lower()}")
    return times[True] / times[False]


class _Masks:
    """A Chain whose passes build the derivative masks (`derivatives=True`, as before) or not."""

    def __init__(self, chain, derivatives: bool):
        self.chain, self.derivatives = chain, derivatives

    def __call__(self, x, tangents=None, derivatives=True):
        return self.chain(x, tangents, derivatives=self.derivatives or derivatives)


def success_line(clf, x, y, steps: int) -> float:
    t_art, adv_art, f_art = pgd(clf, x, y, 0.3, steps, 1000, art=True)
    t_reg, adv_reg, f_reg = pgd(clf, x, y, 0.3, steps, 1000)
    print(f"PGD {steps} steps on {len(x)} images: ART's {t_art:.2f} s, {f_art} forward passes (before); the registry's "
          f"{t_reg:.2f} s, {f_reg} (after); the same bits: {str(np.array_equal(adv_art, adv_reg)).lower()}")
    return f_art / f_reg


def profile_line(name: str, net, x, y, eps: float, rows: int) -> None:
    """Where standard AutoAttack's time goes on `net`: torch's profiler over one run on `x`, the operators
    with the most self CPU time (the matrix products and convolutions against everything else)."""
    attack = ATTACKS["autoattack_standard"].build(make_classifier(net), eps, seed=0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        attack.generate(x, y)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    compute = ("addmm", "mm", "bmm", "matmul", "linear", "convolution", "conv2d", "mkldnn_convolution",
               "convolution_backward", "_convolution", "mkldnn_convolution_backward")
    heavy = sum(e.self_cpu_time_total for e in events if e.key.split("::")[-1] in compute)
    print(f"profile of AutoAttack standard, {name}, {len(x)} images: {total / 1e6:.1f} s of self CPU time, "
          f"{heavy / total:.1%} in matrix products and convolutions")
    print(events.table(sort_by="self_cpu_time_total", row_limit=rows))


def zoo_models() -> list[tuple[str, torch.nn.Module]]:
    """The zoo's `cnn_at` (Madry et al.'s CNN, trained adversarially) and `pgd_at` (the MLP, trained
    adversarially): robust models, on which AutoAttack runs all four of its attacks on most images."""
    return [("cnn_at", load_model("cnn_at").eval()), ("pgd_at", load_model("pgd_at").eval())]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--n", type=int, default=48, help="MNIST test images AutoAttack attacks")
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--train-steps", type=int, default=60, help="Adam steps of 128 images per model")
    p.add_argument("--pgd-n", type=int, default=1000, help="images of the lever measurements")
    p.add_argument("--pgd-steps", type=int, default=10)
    p.add_argument("--reps", type=int, default=3, help="repetitions of the Chain step (the best is kept)")
    p.add_argument("--zoo", action="store_true", help="AutoAttack on the zoo's robust cnn_at and pgd_at instead of "
                                                      "the quickly trained CNN and MLP")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile AutoAttack on the first N images of the CNN (0: no profile)")
    p.add_argument("--aa-only", action="store_true", help="AutoAttack (and its profile) only, not the levers")
    args = p.parse_args()

    with deterministic():
        torch.manual_seed(0)
        train, _ = mnist_train_val(args.data_root, download=False)
        test = load("mnist", "test", args.data_root, download=False)
        x, y = test.x[:args.n], test.y[:args.n].astype(np.int64)
        peak = matmul_peak()
        print(f"{torch.get_num_threads()} torch threads; matmul peak {peak / 1e9:.1f} GFLOP/s")
        rates = {}
        models = zoo_models() if args.zoo else [("cnn", MadryCNN()), ("mlp", MLP())]
        for (name, net), kind in zip(models, ("cnn", "mlp")):
            if not args.zoo:
                t0 = time.perf_counter()
                quick_train(net, train.x, train.y, args.train_steps)
                print(f"{name}: {args.train_steps} training steps in {time.perf_counter() - t0:.1f} s")
            rates[kind] = autoattack_line(name, net, x, y, args.eps, peak)
            if args.profile and kind == "cnn":  # the MLP's millions of small operators filled 24 GB of profiler events
                profile_line(name, net, x[:args.profile], y[:args.profile], args.eps, 12)
        if args.aa_only:
            (cnn_rate, cnn_share), (mlp_rate, mlp_share) = rates["cnn"], rates["mlp"]
            print(f"aa_cnn_images_per_s={cnn_rate:.2f} aa_cnn_flop_share={cnn_share:.3f} "
                  f"aa_mlp_images_per_s={mlp_rate:.2f} aa_mlp_flop_share={mlp_share:.3f}")
            return

        net = AttractorNet().eval()
        d = AttractorDefence(net)
        clf = make_classifier(net, d)
        xp, yp = test.x[:args.pgd_n], test.y[:args.pgd_n].astype(np.int64)
        flops = counted_flops(net, lambda t: net(d.forward(t)[0]), xp[:256], yp[:256])[1]
        share256, share1000 = summed_loss_lines(clf, xp, yp, args.pgd_steps, flops, peak)
        chain_ratio = chain_line(net, d, xp[:256], yp[:256], args.reps)
        forward_ratio = success_line(clf, xp, yp, args.pgd_steps)

    (cnn_rate, cnn_share), (mlp_rate, mlp_share) = rates["cnn"], rates["mlp"]
    print(f"aa_cnn_images_per_s={cnn_rate:.2f} aa_cnn_flop_share={cnn_share:.3f} aa_mlp_images_per_s={mlp_rate:.2f} "
          f"aa_mlp_flop_share={mlp_share:.3f} pgd_share_256={share256:.3f} pgd_share_1000={share1000:.3f} "
          f"chain_step_ratio={chain_ratio:.3f} pgd_forward_ratio={forward_ratio:.3f}")


if __name__ == "__main__":
    main()
