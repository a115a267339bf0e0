"""Ablations of the paper's open choices, measured on the validation split (never the test set).

    python scripts/ablation.py --data-root ../shared/datasets \\
        --variant "paper reading" preset=attractor penalty=estimate \\
        --variant "L_rec summed" preset=attractor penalty=estimate rec_reduction=sum

Each --variant is a name followed by `key=value` overrides of a training preset (`preset=` picks
it; the other keys are TrainConfig fields). Models are trained once and cached like the suite's.
For each variant and each test-time iteration count in --iters (`0` = single pass, `k` = at most
k iterations with tolerance --tol) it prints one markdown row of validation metrics:

- accuracy on the first --n-val validation images (MNIST training images 50,000+), clean and
  under FGSM eps --eps made three ways: on the network's single pass with cross-entropy (the
  suite's `fgsm`, target network); on the reconstruction error ||G(x) - x||^2 instead; and on
  the defended pipeline itself (cross-entropy through the unrolled iterations: the attack sees
  the iteration);
- accepted: share of validation images with Pearson(G^n(x), x) >= T (T = --threshold);
- OOD AUROC of the same score against Fashion-MNIST *training* images (the test images are
  the suite's OOD set, so they are kept out of choices);
- the number of distinct fixed points (rounded to 0.05) the iterated clean images end in.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from art.attacks.evasion import FastGradientMethod

from attractor_bench.cache import get_or_train
from attractor_bench.classifier import make_classifier
from attractor_bench import schema
from attractor_bench.config import train_config
from attractor_bench.data import load, mnist_train_val
from attractor_bench.defenses import AttractorDefence, pearson
from attractor_bench.errors import ConfigError
from attractor_bench.metrics import ood_metrics
from attractor_bench.presets import PRESETS
from attractor_bench.training import TrainConfig


def parse_variant(tokens: list[str]) -> tuple[str, TrainConfig]:
    """NAME KEY=VALUE ...: values read as YAML and checked like a suite's `train:` overrides."""
    name, overrides = tokens[0], {k: yaml.safe_load(v) for k, v in (t.split("=", 1) for t in tokens[1:])}
    preset = overrides.pop("preset", "attractor")
    if preset not in PRESETS:
        raise SystemExit(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    try:
        given = schema.validate(schema.TrainDoc, overrides, Path("--variant"), at=name).given()
        return name, train_config(Path("--variant"), preset, given, name, {})
    except ConfigError as e:
        raise SystemExit(str(e)) from None


@torch.no_grad()
def outputs(model, x: np.ndarray, n_iter: int, tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xt = torch.from_numpy(x)
    if n_iter == 0:
        fixed, logits = model.reconstruct_and_classify(xt)
        fixed = fixed.clamp(0, 1)
    else:
        fixed, _ = AttractorDefence(model, tol=tol, max_iter=n_iter).iterate(xt)
        logits = model(fixed)
    return logits.argmax(1).numpy(), pearson(fixed, xt).numpy(), fixed.reshape(len(x), -1).numpy()


def fgsm(loss_fn, x: np.ndarray, y: np.ndarray, eps: float, batch: int = 500) -> np.ndarray:
    """x + eps sign(grad loss), clipped to [0, 1] (as ART's FastGradientMethod)."""
    out = []
    for s in range(0, len(x), batch):
        xb = torch.from_numpy(x[s : s + batch]).requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(xb, torch.from_numpy(y[s : s + batch])), xb)
        out.append((xb + eps * g.sign()).clamp(0, 1).detach().numpy())
    return np.concatenate(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--variant", nargs="+", action="append", required=True, metavar="NAME [KEY=VALUE ...]")
    p.add_argument("--iters", default="0,1,5,50", help="test-time iteration caps, 0 = single pass")
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--eps", type=float, default=20 / 255)
    p.add_argument("--threshold", type=float, default=0.8)
    p.add_argument("--n-val", type=int, default=2000)
    args = p.parse_args()

    train, val = mnist_train_val(args.data_root, download=False)
    xv, yv = val.x[: args.n_val], val.y[: args.n_val]
    ood = load("fashion_mnist", "train", args.data_root, download=False).x[: args.n_val]
    print(f"validation: MNIST training images 50,000..{50_000 + args.n_val - 1}; OOD: first {args.n_val} "
          f"Fashion-MNIST training images; FGSM eps {args.eps * 255:.0f}/255 on the single pass; T = {args.threshold}")
    print("| variant | iterations | clean acc | FGSM acc | FGSM(rec) acc | FGSM(pipeline) acc | accepted clean | "
          "accepted FGSM | AUROC Fashion | AUROC Fashion FGSM | fixed points | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for tokens in args.variant:
        name, cfg = parse_variant(tokens)
        t0 = time.perf_counter()
        model, blob, cached = get_or_train(cfg, train, val, args.cache_dir)
        train_s = blob.get("train_seconds") or (time.perf_counter() - t0)
        clf = make_classifier(model)
        np.random.seed(0)
        attack = FastGradientMethod(clf, eps=args.eps, batch_size=1000)
        xv_adv = attack.generate(xv, y=yv).astype(np.float32)
        ood_adv = attack.generate(ood).astype(np.float32)
        xv_rec = fgsm(lambda xb, yb: (model.reconstruct(xb) - xb).pow(2).sum(), xv, yv, args.eps)
        for n in (int(s) for s in args.iters.split(",")):
            pred, sim, fixed = outputs(model, xv, n, args.tol)
            pred_a, sim_a, _ = outputs(model, xv_adv, n, args.tol)
            pred_r, _, _ = outputs(model, xv_rec, n, args.tol)
            if n == 0:
                pipe = xv_adv  # the pipeline is the single pass
            else:
                defence = AttractorDefence(model, tol=args.tol, max_iter=n)
                pipe = fgsm(lambda xb, yb: torch.nn.functional.cross_entropy(model(defence.iterate(xb)[0]), yb, reduction="sum"),
                            xv, yv, args.eps)
            pred_p, _, _ = outputs(model, pipe, n, args.tol)
            _, sim_o, _ = outputs(model, ood, n, args.tol)
            _, sim_oa, _ = outputs(model, ood_adv, n, args.tol)
            n_fixed = len(np.unique(np.round(fixed / 0.05).astype(np.int16), axis=0)) if n > 0 else "-"
            print(f"| {name} | {n if n else 'single pass'} | {100 * (pred == yv).mean():.2f} | {100 * (pred_a == yv).mean():.2f} | "
                  f"{100 * (pred_r == yv).mean():.2f} | {100 * (pred_p == yv).mean():.2f} | "
                  f"{100 * (sim >= args.threshold).mean():.2f} | {100 * (sim_a >= args.threshold).mean():.2f} | "
                  f"{100 * ood_metrics(-sim, -sim_o)['AUROC']:.2f} | {100 * ood_metrics(-sim_a, -sim_oa)['AUROC']:.2f} | {n_fixed} | {train_s:.0f} |", flush=True)


if __name__ == "__main__":
    main()
