"""The suite runner: suite -> (cached) trained models -> ART classifier + defence -> attacks per
(model, attack, eps, dataset) cell -> metrics -> tidy rows -> tables.

For every model and every (attack, eps), each dataset (MNIST test, then each OOD set) is attacked
and passed through the defended pipeline once; the per-sample outputs (prediction after the
fixed-point iteration, single-pass prediction, similarity, iterations) give every metric.
Clean inputs are the rows with attack `none`, eps 0.

Choices (recorded in each results README): the attack's labels are the true labels on MNIST and
the model's own predictions on OOD sets (ART's default for y=None); FGSM differentiates the
classification cross-entropy; `target: network` attacks the single pass of the trained network
(the paper's reading), `target: pipeline` the defended classifier (gradients as `defence.backward`).
"""

from __future__ import annotations

import hashlib
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import data as data_mod
from .attacks import ATTACKS
from .cache import get_or_train
from .classifier import make_classifier
from .config import AttackSpec, Suite, Target, load_suite
from .defenses import DEFENCES, PearsonRejector, pearson
from .errors import AttractorBenchError
from .metrics import accuracy, ood_metrics
from .models import AttractorNet

EVAL_BATCH = 1000


@dataclass
class RunResult:
    suite: Suite
    table: pd.DataFrame
    meta: dict = field(default_factory=dict)


@torch.no_grad()
def evaluate(model: AttractorNet, defence, x: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample outputs of the defended pipeline on images x (N, 1, 28, 28)."""
    out = {k: [] for k in ("pred", "pred_single", "similarity", "similarity_single", "n_iter")}
    for start in range(0, len(x), EVAL_BATCH):
        xb = torch.from_numpy(x[start : start + EVAL_BATCH]).to(defence.device)
        fixed, n_iter = defence.iterate(xb)
        recon, logits = model.reconstruct_and_classify(xb)  # the single pass: G(x) and its logits
        out["pred"].append(model(fixed).argmax(1))
        out["pred_single"].append(logits.argmax(1))
        out["similarity"].append(pearson(fixed, xb))
        out["similarity_single"].append(pearson(recon.clamp(0, 1) if defence.clip else recon, xb))
        out["n_iter"].append(n_iter)
    return {k: torch.cat(v).cpu().numpy() for k, v in out.items()}


def cell_metrics(out: dict, id_out: dict | None, y: np.ndarray | None, threshold: float,
                 x: np.ndarray, x_adv: np.ndarray) -> dict[str, float]:
    """The metrics of one cell from `evaluate`'s outputs. For MNIST (`y` given): accuracies and
    acceptance; for an OOD set: detection metrics against `id_out`, MNIST's outputs at the same
    (attack, eps). Both: iterations and the size of the perturbation applied."""
    delta = (x_adv - x).reshape(len(x), -1)
    common = {
        "mean_iterations": out["n_iter"].mean(),
        "perturbation_linf": np.abs(delta).max(1).mean(),
        "perturbation_l2": np.linalg.norm(delta, axis=1).mean(),
    }
    accepted = out["similarity"] >= threshold
    if y is not None:
        return {
            "accuracy": accuracy(out["pred"], y),
            "accuracy_single_pass": accuracy(out["pred_single"], y),
            "accepted": accepted.mean(),
            "end_to_end_accuracy": ((out["pred"] == y) & accepted).mean(),
            "accepted_single_pass": (out["similarity_single"] >= threshold).mean(),
            **common,
        }
    single = ood_metrics(id_out["similarity_single"], out["similarity_single"], threshold)
    return {
        **ood_metrics(id_out["similarity"], out["similarity"], threshold),
        # the same rejector on Pearson(G(x), x), one pass without iteration
        **{f"{k}_single_pass": single[k] for k in ("ood_accuracy", "ood_precision", "ood_recall", "ood_auroc")},
        **common,
    }


def _cell_seed(seed: int, *parts) -> int:
    return int.from_bytes(hashlib.sha256(repr((seed, *parts)).encode()).digest()[:4], "little")


def _attack(spec: AttackSpec, eps: float, classifiers: dict, x: np.ndarray, y: np.ndarray | None, seed: int) -> np.ndarray:
    if eps == 0:
        return x
    np.random.seed(seed)
    torch.manual_seed(seed)
    attack = ATTACKS[spec.name].build(classifiers[spec.target], eps, **spec.params)
    x_adv = attack.generate(x, y=y).astype(np.float32)
    linf = np.abs(x_adv - x).reshape(len(x), -1).max(1)
    if linf.max() > eps + 1e-5:
        raise AttractorBenchError(
            f"Attack {spec.label} produced a perturbation of L-inf size {linf.max():.5f} > eps {eps:.5f}: "
            "its result cannot be trusted. Check the attack's parameters."
        )
    return x_adv


def _rows(model: str, attack: str, eps: float, dataset: str, metrics: dict) -> list[dict]:
    return [dict(model=model, attack=attack, eps=eps, dataset=dataset, metric=k, value=float(v)) for k, v in metrics.items()]


def run_suite(
    suite: Suite | str | Path,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
    console: Console | None = None,
    progress: bool = True,
) -> RunResult:
    """Run every cell of `suite`; return the tidy table (columns model, attack, eps, dataset,
    metric, value) and run metadata. Writing files is `attractor_bench.report`'s job."""
    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    console = console or Console(stderr=True)
    t_start = time.perf_counter()
    torch.manual_seed(suite.seed)

    train_split, val_split = data_mod.mnist_train_val(data_root, download)
    sets = {"mnist": data_mod.load("mnist", "test", data_root, download).head(suite.data.n_test)}
    for name in suite.data.ood:
        sets[name] = data_mod.load(name, "test", data_root, download).head(suite.data.n_ood)

    n_cells = len(suite.models) * (1 + sum(len(a.eps) for a in suite.attacks)) * len(sets)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console, disable=not progress)
    plain_log = progress and not console.is_terminal  # no live bars in a log file: print lines instead
    # Timings go to the metadata, not the table: the table is identical run after run.
    rows, meta = [], {"models": {}, "cell_seconds": []}
    with bar if progress else nullcontext():
        cells = bar.add_task("cells", total=n_cells)
        for spec in suite.models:
            task = bar.add_task(f"train {spec.name}", total=None)

            def on_epoch(stage, epoch, max_epochs, acc, task=task, name=spec.name):
                line = f"train {name}: {stage} epoch {epoch} (val acc {acc:.2%})"
                bar.update(task, description=line)
                if plain_log:
                    console.print(line, highlight=False)

            t0 = time.perf_counter()
            model, blob, cached = get_or_train(spec.train, train_split, val_split, cache_dir, on_epoch)
            bar.update(task, description=f"{spec.name}: {'loaded from cache' if cached else 'trained'}", total=1, completed=1)
            defence = DEFENCES[suite.defence.name](model, **suite.defence.params)
            rejector = PearsonRejector(defence, threshold=suite.rejector.threshold or 0.0)
            if suite.rejector.target_tpr is not None:
                rejector.fit(val_split.x, target_tpr=suite.rejector.target_tpr)
            meta["models"][spec.name] = {
                "preset": spec.preset, "config": spec.train.to_dict(), "from_cache": cached,
                "seconds_train_or_load": round(time.perf_counter() - t0, 1), "threshold": rejector.threshold,
                "train_seconds": blob.get("train_seconds"),  # when it was trained (older checkpoints lack it)
                "history": {k: {"best_epoch": v["best_epoch"], "epochs": len(v["val_accuracy"]),
                                "best_val_accuracy": v["best_val_accuracy"]} for k, v in blob["history"].items()},
            }
            classifiers = {Target.NETWORK: make_classifier(model), Target.PIPELINE: make_classifier(model, defence)}
            grid = [(None, 0.0)] + [(a, e) for a in suite.attacks for e in a.eps]
            for attack, eps in grid:
                label = attack.label if attack else "none"
                outputs = {}
                for ds, split in sets.items():
                    bar.update(cells, description=f"{spec.name} {label} eps={eps:.4f} {ds}")
                    t0 = time.perf_counter()
                    y = split.y if ds == "mnist" else None
                    x_adv = x = split.x
                    if attack is not None:
                        x_adv = _attack(attack, eps, classifiers, x, y, _cell_seed(suite.seed, spec.name, label, eps, ds))
                    out = evaluate(model, defence, x_adv)
                    metrics = cell_metrics(out, outputs.get("mnist"), y, rejector.threshold, x, x_adv)
                    seconds = time.perf_counter() - t0
                    meta["cell_seconds"].append(dict(model=spec.name, attack=label, eps=eps, dataset=ds, seconds=round(seconds, 2)))
                    outputs[ds] = out
                    rows += _rows(spec.name, label, eps, ds, metrics)
                    bar.advance(cells)
                    if plain_log:
                        console.print(f"{spec.name} {label} eps={eps:.4f} {ds}: done in {seconds:.1f} s", highlight=False)
    meta["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    table = pd.DataFrame(rows, columns=["model", "attack", "eps", "dataset", "metric", "value"])
    return RunResult(suite, table, meta)
