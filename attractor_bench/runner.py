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
from .attacks import ATTACKS, perturbation_norms, within_budget
from .cache import get_or_train
from .classifier import make_classifier
from .config import AttackSpec, Suite, Target, load_suite
from .defenses import DEFENCES, PearsonRejector, pearson
from .errors import AttractorBenchError
from .metrics import accuracy, ood_metrics
from .models import AttractorNet
from .robustness import Record, sanity_flags, worst_case, worst_case_ood

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
            "end_to_end_accuracy": ((out["pred"] == y) & accepted).mean(),  # rejector on: accepted and correct
            "rejected": 1.0 - accepted.mean(),
            "accepted_wrong": ((out["pred"] != y) & accepted).mean(),
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


def subset(n_total: int, n: int | None, seed: int) -> np.ndarray:
    """The fixed, seeded subset of `n` of `n_total` images (sorted indices). Subsets of different
    sizes are nested (prefixes of one seeded permutation), so every attack's images contain the
    smaller subsets' images."""
    if n is None or n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng([seed, 7]).permutation(n_total)[:n])


def _check_budget(label: str, x_adv: np.ndarray, x: np.ndarray, eps: float, norm: str) -> None:
    size = perturbation_norms(x_adv, x, norm).max(initial=0.0)
    if size > eps * (1 + 1e-5) + 1e-6:
        raise AttractorBenchError(
            f"Attack {label} produced a perturbation of {norm} size {size:.5f} > eps {eps:.5f}: "
            "its result cannot be trusted. Check the attack's parameters."
        )


def _attack(spec: AttackSpec, eps: float, classifier, x: np.ndarray, y: np.ndarray | None, seed: int,
            rejector=None) -> np.ndarray:
    """x attacked by `spec` at `eps` through `classifier` (unbounded for minimal-perturbation attacks)."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    attack = ATTACKS[spec.name].build(classifier, eps, rejector=rejector, **spec.params)
    return attack.generate(x, y=y).astype(np.float32)


def zero_gradient_share(classifier, x: np.ndarray, y: np.ndarray) -> float:
    """Share of images whose input gradient of the classifier's loss is exactly zero."""
    grads = classifier.loss_gradient(x, np.eye(classifier.nb_classes, dtype=np.float32)[y])
    return float((np.abs(grads).reshape(len(x), -1).max(1) == 0).mean())


def _rows(model: str, attack: str, eps: float, dataset: str, metrics: dict) -> list[dict]:
    return [dict(model=model, attack=attack, eps=eps, dataset=dataset, metric=k, value=float(v)) for k, v in metrics.items()]


@dataclass
class Defended:
    """One trained model with its defence, rejector and the classifiers attacks see."""

    model: AttractorNet
    defence: object
    rejector: PearsonRejector
    classifiers: dict


def _prepare(suite: Suite, train_split, val_split, cache_dir, bar, console, plain_log: bool, meta: dict) -> dict[str, Defended]:
    """Train (or load) every model of the suite first: transfer attacks need their source's network."""
    prepared = {}
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
        bpda = DEFENCES[suite.defence.name](model, **{**suite.defence.params, "backward": "bpda"})
        classifiers = {Target.NETWORK: make_classifier(model), Target.PIPELINE: make_classifier(model, defence),
                       Target.BPDA: make_classifier(model, bpda)}
        prepared[spec.name] = Defended(model, defence, rejector, classifiers)
    return prepared


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
    subsets = {(ds, n): subset(len(split.x), n, suite.seed) for ds, split in sets.items() for n in
               {None, *(a.n for a in suite.attacks)}}

    def datasets(attack: AttackSpec | None) -> list[str]:
        return list(sets) if attack is None or attack.ood else ["mnist"]

    n_cells = len(suite.models) * sum(len(datasets(a)) * (len(a.eps) if a else 1) for a in [None, *suite.attacks])
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console, disable=not progress)
    plain_log = progress and not console.is_terminal  # no live bars in a log file: print lines instead
    # Timings go to the metadata, not the table: the table is identical run after run.
    rows, meta = [], {"models": {}, "cell_seconds": [], "flags": {}, "subsets": {}}
    for a in suite.attacks:
        if a.n is not None:
            meta["subsets"][a.label] = {ds: int(len(subsets[(ds, a.n)])) for ds in datasets(a)}
    transfer_cache: dict = {}  # (label, eps, dataset) -> examples made on the source network, shared by all targets
    with bar if progress else nullcontext():
        prepared = _prepare(suite, train_split, val_split, cache_dir, bar, console, plain_log, meta)
        cells = bar.add_task("cells", total=n_cells)
        for spec in suite.models:
            d = prepared[spec.name]
            records: dict[str, list[Record]] = {ds: [] for ds in sets}
            unbounded: dict = {}  # (label, dataset) -> a minimal-perturbation attack's output, read at every eps
            clean_out: dict = {}
            grid = [(None, 0.0)] + [(a, e) for a in suite.attacks for e in a.eps]
            for attack, eps in grid:
                label = attack.label if attack else "none"
                entry = ATTACKS[attack.name] if attack else None
                outputs = {}
                for ds in datasets(attack):
                    bar.update(cells, description=f"{spec.name} {label} eps={eps:.4f} {ds}")
                    t0 = time.perf_counter()
                    idx = subsets[(ds, attack.n if attack else None)]
                    x = sets[ds].x[idx]
                    y = sets[ds].y[idx] if ds == "mnist" else None
                    x_adv = x
                    if attack is not None and eps > 0:
                        if attack.target is Target.TRANSFER:
                            key = (label, eps, ds)
                            if key not in transfer_cache:
                                transfer_cache[key] = _attack(attack, eps, prepared[attack.source].classifiers[Target.NETWORK],
                                                              x, y, _cell_seed(suite.seed, attack.source, label, eps, ds))
                            x_adv = transfer_cache[key]
                        elif entry.bounded:
                            x_adv = _attack(attack, eps, d.classifiers[attack.target], x, y,
                                            _cell_seed(suite.seed, spec.name, label, eps, ds), d.rejector)
                        else:
                            if (label, ds) not in unbounded:
                                unbounded[(label, ds)] = _attack(attack, eps, d.classifiers[attack.target], x, y,
                                                                 _cell_seed(suite.seed, spec.name, label, ds), d.rejector)
                            x_adv = within_budget(unbounded[(label, ds)], x, eps, entry.norm)
                        _check_budget(label, x_adv, x, eps, entry.norm)
                    out = evaluate(d.model, d.defence, x_adv)
                    if attack is None:
                        clean_out[ds] = out
                    metrics = cell_metrics(out, outputs.get("mnist"), y, d.rejector.threshold, x, x_adv)
                    if attack is not None and attack.n is not None:
                        metrics["n_samples"] = len(idx)
                    seconds = time.perf_counter() - t0
                    meta["cell_seconds"].append(dict(model=spec.name, attack=label, eps=eps, dataset=ds, seconds=round(seconds, 2)))
                    outputs[ds] = out
                    rows += _rows(spec.name, label, eps, ds, metrics)
                    records[ds].append(Record(
                        label, eps, entry.norm if entry else "none", entry.kind if entry else "clean",
                        bool(entry and entry.single_step), attack.target.value if attack else "none", idx,
                        out["pred"] == y if y is not None else None, out["similarity"] >= d.rejector.threshold))
                    bar.advance(cells)
                    if plain_log:
                        console.print(f"{spec.name} {label} eps={eps:.4f} {ds}: done in {seconds:.1f} s", highlight=False)
            rows += _aggregate(spec.name, suite, d, sets, records, meta)
    meta["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    table = pd.DataFrame(rows, columns=["model", "attack", "eps", "dataset", "metric", "value"])
    return RunResult(suite, table, meta)


def _aggregate(name: str, suite: Suite, d: Defended, sets: dict, records: dict[str, list[Record]], meta: dict) -> list[dict]:
    """Worst-case rows and sanity-flag rows of one model."""
    rows = []
    clean, attacked = records["mnist"][0], records["mnist"][1:]
    for label, eps, metrics in worst_case(clean, attacked):
        rows += _rows(name, label, eps, "mnist", metrics)
    for ds in sets:
        if ds != "mnist":
            for label, eps, metrics in worst_case_ood(records[ds][1:]):
                rows += _rows(name, label, eps, ds, metrics)
    targets = sorted({a.target for a in suite.attacks if a.target.white_box and ATTACKS[a.name].kind == "gradient"}, key=str)
    mnist = sets["mnist"]
    shares = {t.value: zero_gradient_share(d.classifiers[t], mnist.x, mnist.y) for t in targets}
    flags, why = sanity_flags(clean, attacked, shares)
    meta["flags"][name] = why
    rows += _rows(name, "sanity", 0.0, "mnist", {**{f"zero_gradient_share_{t}": v for t, v in shares.items()}, **flags,
                                                   "potentially_unreliable": int(any(flags.values()))})
    return rows
