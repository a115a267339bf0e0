"""Where an attack's time goes: the registry's attacks against a plain torch loop and this machine's peak.

    python benchmarks/attack_throughput.py --data-root ../shared/datasets [--n 1000] [--steps 40] [--rounds 3]

On one trained model of a suite (default: `attractor` of suites/leaderboard.yaml, trained on first
use into the usual cache, then loaded), on the first `--n` MNIST test images, in one run:

- PGD L-inf (`--steps` steps, eps `--eps`, step eps/4, one random start) through the defended
  pipeline with the project's registry entry (ART's ProjectedGradientDescent, through the same
  ART classifier a cell uses), against a plain torch loop doing the same steps on the same
  modules with the same batch size and the same random start (`pgd_identical`: both give the
  same bits), the registry's PGD at a batch of 256 when the batch is another (and whether it
  gives the same bits), and torchattacks' PGD when it imports (it needs torchvision, which does not
  import with this project's CPU build of torch). Registry and plain loop alternate for
  `--rounds` rounds; medians are reported.
- The FLOP rate that PGD achieves against this machine's matrix-multiply peak (the best of a few
  2048x2048 float32 matmuls, measured here): the multiply-adds of one step are counted by
  `torch.utils.flop_counter` on the plain loop's step (forward, and the backward pass to the
  input: what the attack needs; weight gradients are not needed and not counted).
- Square (`--square-iters` iterations): queries per second, a query being a distinct image the
  attack has the pipeline classify, against the pipeline's forward rate at a batch of `--n`.
- APGD-CE (`--steps` iterations): its time beside the plain PGD loop's.
- One cell end to end (`compute_cell`: the registry's `pgd` through the pipeline at eps `--eps`,
  `--steps` steps, on these images, as the suite's `pgd` cells run, into a temporary cell
  store), split into attack, evaluation and storage time.

The last line is

    pgd_art_over_torch=<x> pgd_flop_share=<y> square_query_share=<z> cell_seconds=<w>

`pgd_art_over_torch` is the plain loop's time over the registry attack's (1.0: no overhead); the
shares are fractions of the measured peak.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch.utils.flop_counter import FlopCounterMode

from attractor_bench import cells
from attractor_bench.attacks import ATTACKS
from attractor_bench.config import AttackSpec, Target, load_suite
from attractor_bench.data import mnist_train_val
from attractor_bench.determinism import deterministic
from attractor_bench.preparation import prepare
from attractor_bench.progress import Log
from attractor_bench.runner import load_images
from attractor_bench.store import CellStore

REPO = Path(__file__).resolve().parents[1]
ART_BATCH = 256  # the batch size the registry used before it was chosen for the machine


def seconds(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def pipeline(d: cells.Defended):
    """The defended pipeline as one torch function, exactly as ART's classifier applies it."""
    return lambda x: d.model(x if d.defence is None else d.defence.forward(x)[0])


def plain_pgd(f, x: np.ndarray, y: np.ndarray, eps: float, eps_step: float, steps: int, batch: int, seed: int) -> np.ndarray:
    """PGD L-inf with one random start, as ART computes it, in a plain torch loop: per batch, a
    uniform start in the eps-ball (numpy's generator, as ART draws it), then `steps` signed
    gradient steps of the mean cross-entropy, each clipped to [0, 1] and projected to the ball."""
    cells.seed_everything(seed)
    out = np.empty_like(x)
    step32, eps32 = torch.tensor(eps_step), torch.tensor(eps)
    for b in range(0, len(x), batch):
        x0, yb = torch.from_numpy(x[b:b + batch]), torch.from_numpy(y[b:b + batch]).long()
        noise = np.random.uniform(-eps, eps, (len(x0), x0[0].numel())).reshape(x0.shape).astype(np.float32)
        xa = (x0 + torch.from_numpy(noise)).clamp(0, 1)
        for _ in range(steps):
            xg = xa.detach().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(f(xg), yb)
            (grad,) = torch.autograd.grad(loss, xg)
            xa = (xa + step32 * grad.sign()).clamp(0, 1)
            xa = torch.minimum(torch.maximum(xa - x0, -eps32), eps32) + x0
        out[b:b + batch] = xa.detach().numpy()
    return out


def registry_attack(name: str, d: cells.Defended, x, y, eps: float, seed: int, **params) -> np.ndarray:
    """The registry's attack `name` through the defended pipeline, as a cell runs it (`run_attack`)."""
    spec = AttackSpec(name, name, (eps,), Target.PIPELINE, params)
    return cells.run_attack(spec, eps, d.classifiers[Target.PIPELINE], x, y, seed)


def step_flops(f, x: np.ndarray, y: np.ndarray) -> float:
    """Floating-point operations per image of one attack step: forward, and backward to the input."""
    xg = torch.from_numpy(x).requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        loss = torch.nn.functional.cross_entropy(f(xg), torch.from_numpy(y).long())
        torch.autograd.grad(loss, xg)
    return counter.get_total_flops() / len(x)


def forward_flops(f, x: np.ndarray) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        f(torch.from_numpy(x))
    return counter.get_total_flops() / len(x)


def matmul_peak(size: int = 2048, reps: int = 10) -> float:
    """FLOP/s of the best of `reps` float32 size^3 matrix multiplications."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm up
    best = min(seconds(torch.matmul, a, b)[0] for _ in range(reps))
    return 2 * size**3 / best


def forward_rate(f, x: np.ndarray, reps: int = 5) -> float:
    """Images per second through the pipeline's forward pass, the whole of x as one batch."""
    xt = torch.from_numpy(x)
    with torch.no_grad():
        f(xt)
        return len(x) / min(seconds(f, xt)[0] for _ in range(reps))


def count_queries(clf):
    """Wrap clf.predict to count the distinct images it is asked to classify (and all rows asked);
    returns (counter dict, restore function). The counting's own time is recorded to be subtracted."""
    predict, seen, tally = clf.predict, set(), {"distinct": 0, "rows": 0, "count_seconds": 0.0}

    def counting(x, *args, **kwargs):
        t0 = time.perf_counter()
        rows = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1)
        new = {r.tobytes() for r in rows} - seen
        seen.update(new)
        tally["distinct"] += len(new)
        tally["rows"] += len(rows)
        tally["count_seconds"] += time.perf_counter() - t0
        return predict(x, *args, **kwargs)

    clf.predict = counting
    return tally, lambda: clf.__dict__.pop("predict", None)


def torchattacks_pgd(f, x, y, eps, eps_step, steps, batch):
    try:
        import torchattacks
    except Exception as e:  # noqa: BLE001 - any import failure means: not available here
        return None, f"not importable ({type(e).__name__}: {str(e)[:80]})"

    class Module(torch.nn.Module):
        def forward(self, inp):
            return f(inp)

    attack = torchattacks.PGD(Module(), eps=eps, alpha=eps_step, steps=steps, random_start=True)
    t0 = time.perf_counter()
    for b in range(0, len(x), batch):
        attack(torch.from_numpy(x[b:b + batch]), torch.from_numpy(y[b:b + batch]).long())
    return time.perf_counter() - t0, "ok"


def timed_cell(ws, cell, store):
    """compute_cell with its attack, evaluation and storage timed separately."""
    spent = {"attack": 0.0, "evaluate": 0.0, "store": 0.0}

    def timing(name, fn):
        def wrapped(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t0
        return wrapped

    adversarial, evaluate, put = cells._adversarial, cells.evaluate, store.put
    cells._adversarial, cells.evaluate, store.put = timing("attack", adversarial), timing("evaluate", evaluate), timing("store", put)
    try:
        total, _ = seconds(cells.compute_cell, ws, cell, store)
    finally:
        cells._adversarial, cells.evaluate = adversarial, evaluate
        del store.put
    return total, spent


def workspace(args):
    suite = load_suite(args.suite)
    spec = next((m for m in suite.models if m.name == args.model), None)
    if spec is None:
        raise SystemExit(f"{args.suite} has no model {args.model!r}; it has {', '.join(m.name for m in suite.models)}.")
    pgd = AttackSpec("pgd", "pgd", (args.eps,), Target.PIPELINE, {"max_iter": args.steps}, ood=False)  # the end-to-end cell
    suite = dataclasses.replace(suite, models=(spec,), attacks=(pgd,), data=dataclasses.replace(suite.data, n_test=args.n, ood=()))
    log = Log(Console(stderr=True), progress=False)
    splits = mnist_train_val(args.data_root, download=False)
    ws, _ = prepare(suite, splits, load_images(suite, args.data_root, download=False), args.cache_dir, log, torch.device("cpu"))
    return ws


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--cache-dir", type=Path, default=None, help="model cache (default: the usual one)")
    p.add_argument("--suite", type=Path, default=REPO / "suites" / "leaderboard.yaml")
    p.add_argument("--model", default="attractor")
    p.add_argument("--n", type=int, default=1000, help="MNIST test images")
    p.add_argument("--steps", type=int, default=40, help="PGD and APGD-CE iterations")
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--batch", type=int, default=None, help="attack batch size (default: the registry's)")
    p.add_argument("--square-iters", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()

    with deterministic():
        ws = workspace(args)
        d = ws.prepared[args.model]
        f = pipeline(d)
        x, y = ws.inputs("mnist", None), ws.labels("mnist", None)
        batch = args.batch or ATTACKS["pgd"].defaults["batch_size"]
        eps, eps_step, seed = args.eps, args.eps * 0.25, 1234
        print(f"model {args.model} of {args.suite.name}: {args.n} images, {args.steps} steps, eps {eps}, batch {batch}, "
              f"{torch.get_num_threads()} torch threads")

        peak = matmul_peak()
        flops = step_flops(f, x[:batch], y[:batch])
        fwd = forward_flops(f, x[:batch])
        t_art, t_plain = [], []
        for _ in range(args.rounds):
            t, adv_art = seconds(registry_attack, "pgd", d, x, y, eps, seed, max_iter=args.steps, batch_size=batch)
            t_art.append(t)
            t, adv_plain = seconds(plain_pgd, f, x, y, eps, eps_step, args.steps, batch, seed)
            t_plain.append(t)
        art_s, plain_s = statistics.median(t_art), statistics.median(t_plain)
        print(f"rounds (s): registry {' '.join(f'{t:.2f}' for t in t_art)}; plain {' '.join(f'{t:.2f}' for t in t_plain)}")
        identical = bool(np.array_equal(adv_art, adv_plain))
        work = flops * args.n * args.steps
        print(f"matmul peak {peak / 1e9:.1f} GFLOP/s; one PGD step {flops / 1e6:.2f} MFLOP per image "
              f"(forward {fwd / 1e6:.2f})")
        print(f"PGD registry (ART) {art_s:.2f} s = {work / art_s / 1e9:.1f} GFLOP/s; plain torch loop {plain_s:.2f} s = "
              f"{work / plain_s / 1e9:.1f} GFLOP/s; pgd_identical={str(identical).lower()}")
        if batch != ART_BATCH:
            t, adv_art_batch = seconds(registry_attack, "pgd", d, x, y, eps, seed, max_iter=args.steps, batch_size=ART_BATCH)
            print(f"PGD registry at a batch of {ART_BATCH}: {t:.2f} s, the same bits as at {batch}: "
                  f"{str(bool(np.array_equal(adv_art, adv_art_batch))).lower()}")
        t_ta, status = torchattacks_pgd(f, x, y, eps, eps_step, args.steps, batch)
        print(f"PGD torchattacks: {f'{t_ta:.2f} s' if t_ta is not None else status}")

        t_apgd, _ = seconds(registry_attack, "apgd_ce", d, x, y, eps, seed, max_iter=args.steps, batch_size=batch)
        print(f"APGD-CE registry (ART) {t_apgd:.2f} s; the plain PGD loop's time over it {plain_s / t_apgd:.2f} (ART's "
              "APGD attacks only the images still classified correctly, and computes the loss once more per step)")

        rate = forward_rate(f, x)
        clf = d.classifiers[Target.PIPELINE]
        tally, restore = count_queries(clf)
        try:
            t_sq, _ = seconds(registry_attack, "square", d, x, y, eps, seed, max_iter=args.square_iters)
        finally:
            restore()
        t_sq -= tally["count_seconds"]
        qps = tally["distinct"] / t_sq
        print(f"forward pass {rate:.0f} images/s ({rate * fwd / 1e9:.1f} GFLOP/s); Square {args.square_iters} iterations "
              f"{t_sq:.2f} s: {tally['distinct']} distinct queries ({tally['rows']} rows asked), {qps:.0f} queries/s")

        with tempfile.TemporaryDirectory() as tmp:
            cell = next(c for _, _, cs in cells.plan(ws)[args.model] for c in cs if c.attack is not None)
            total, spent = timed_cell(ws, cell, CellStore(tmp, fresh=True))
        print(f"cell {args.model} pgd eps {eps} mnist: {total:.2f} s = attack {spent['attack']:.2f} + evaluation "
              f"{spent['evaluate']:.2f} + storage {spent['store']:.3f} + other {total - sum(spent.values()):.3f}")

    print(f"pgd_art_over_torch={plain_s / art_s:.3f} pgd_flop_share={work / art_s / peak:.3f} "
          f"square_query_share={qps / rate:.3f} cell_seconds={total:.2f}")


if __name__ == "__main__":
    main()
