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
import random
import sys
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
from .attacks import perturbation_norms, within_budget
from .cache import get_or_fit, get_or_train, resolve_cache_dir
from .classifier import make_classifier
from .config import AttackSpec, ModelSpec, Suite, Target, load_suite
from .determinism import deterministic
from .defenses import AttractorDefence, PearsonRejector, pearson, straight_through
from .errors import AttractorBenchError, ConfigError
from .metrics import accuracy, ood_metrics
from .recipes import Context, Recipe
from .robustness import Record, sanity_flags, worst_case, worst_case_ood
from .store import CELL_FORMAT, CellStore, array_fingerprint, source_fingerprint, weights_fingerprint
from .store import key as store_key

EVAL_BATCH = 1000


@dataclass
class RunResult:
    suite: Suite
    table: pd.DataFrame
    meta: dict = field(default_factory=dict)
    # What the plots draw that the table does not hold: per-sample similarity scores of the clean
    # and of one attacked cell per model with a rejector, and one input's attacked iterates.
    figures: dict = field(default_factory=dict)


@torch.no_grad()
def evaluate(d: "Defended", x: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample outputs of model `d`'s defended pipeline on images x (N, 1, 28, 28): the
    prediction after the defence, the single-pass prediction, and for the attractor defence the
    similarity scores (iterated and single pass) and iteration counts. Without a rejector the
    similarities are NaN and the iteration counts 0."""
    if d.rejector is None:
        n = len(x)
        return {"pred": d.classifiers[Target.PIPELINE].predict(x, batch_size=EVAL_BATCH).argmax(1),
                "pred_single": d.classifiers[Target.NETWORK].predict(x, batch_size=EVAL_BATCH).argmax(1),
                "similarity": np.full(n, np.nan, np.float32), "similarity_single": np.full(n, np.nan, np.float32),
                "n_iter": np.zeros(n, np.int64)}
    model, defence = d.model, d.defence
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


def perturbation_sizes(x: np.ndarray, x_adv: np.ndarray) -> dict[str, np.ndarray]:
    delta = (x_adv - x).reshape(len(x), -1)
    return {"delta_linf": np.abs(delta).max(1), "delta_l2": np.linalg.norm(delta, axis=1)}


def accepted(out: dict, threshold: float | None) -> np.ndarray:
    """Which samples the rejector accepts (all of them without a rejector, `threshold` None)."""
    return np.ones(len(out["pred"]), bool) if threshold is None else out["similarity"] >= threshold


def cell_metrics(out: dict, id_out: dict | None, y: np.ndarray | None, threshold: float | None) -> dict[str, float]:
    """The metrics of one cell from `evaluate`'s outputs and `perturbation_sizes`. For MNIST (`y`
    given): accuracies and acceptance; for an OOD set: detection metrics against `id_out`, MNIST's
    outputs at the same (attack, eps), NaN without a rejector (`threshold` None). Both: iterations
    and the size of the perturbation applied."""
    common = {
        "mean_iterations": out["n_iter"].mean(),
        "perturbation_linf": out["delta_linf"].mean(),
        "perturbation_l2": out["delta_l2"].mean(),
    }
    accepted_ = accepted(out, threshold)
    if y is not None:
        return {
            "accuracy": accuracy(out["pred"], y),
            "accuracy_single_pass": accuracy(out["pred_single"], y),
            "accepted": accepted_.mean(),
            "end_to_end_accuracy": ((out["pred"] == y) & accepted_).mean(),  # rejector on: accepted and correct
            "rejected": 1.0 - accepted_.mean(),
            "accepted_wrong": ((out["pred"] != y) & accepted_).mean(),
            "accepted_single_pass": accepted({**out, "similarity": out["similarity_single"]}, threshold).mean(),
            **common,
        }
    if threshold is None:
        nan = float("nan")
        return {**{k: nan for k in ("ood_accuracy", "ood_precision", "ood_recall", "ood_auroc", "ood_fpr_at_95tpr")},
                "accepted": 1.0, **{f"{k}_single_pass": nan for k in ("ood_accuracy", "ood_precision", "ood_recall",
                                                                        "ood_auroc")}, **common}
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _attack(spec: AttackSpec, eps: float, classifier, x: np.ndarray, y: np.ndarray | None, seed: int,
            rejector=None) -> np.ndarray:
    """x attacked by `spec` at `eps` through `classifier` (unbounded for minimal-perturbation attacks).
    Every random generator an attack may draw from is seeded from the cell, so a cell's result
    does not depend on what ran before it (resumed runs equal uninterrupted ones)."""
    seed_everything(seed)
    attack = spec.entry.build(classifier, eps, rejector=rejector, **spec.params)
    return attack.generate(x, y=y).astype(np.float32)


def zero_gradient_share(classifier, x: np.ndarray, y: np.ndarray) -> float:
    """Share of images whose input gradient of the classifier's loss is exactly zero."""
    grads = classifier.loss_gradient(x, np.eye(classifier.nb_classes, dtype=np.float32)[y])
    return float((np.abs(grads).reshape(len(x), -1).max(1) == 0).mean())


def _rows(model: str, attack: str, eps: float, dataset: str, metrics: dict) -> list[dict]:
    return [dict(model=model, attack=attack, eps=eps, dataset=dataset, metric=k, value=float(v)) for k, v in metrics.items()]


@dataclass
class Defended:
    """One trained model with its defence, rejector (None unless the defence is the attractor's)
    and the classifiers attacks see (built on first use, and again after unpickling in a worker);
    `fingerprint` identifies all of that for the cell store, `network_fingerprint` the undefended
    network alone (transfer examples are made on it)."""

    model: torch.nn.Module
    defence: object
    rejector: PearsonRejector | None
    fingerprint: str = ""
    network_fingerprint: str = ""

    @property
    def threshold(self) -> float | None:
        return None if self.rejector is None else self.rejector.threshold

    @property
    def classifiers(self) -> dict:
        if getattr(self, "_classifiers", None) is None:
            dev = next(self.model.parameters(), torch.empty(0)).device
            self._classifiers = {Target.NETWORK: make_classifier(self.model, device=dev),
                                 Target.PIPELINE: make_classifier(self.model, self.defence, device=dev),
                                 Target.BPDA: make_classifier(self.model, straight_through(self.defence), device=dev)}
        return self._classifiers

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_classifiers"}  # ART classifiers are rebuilt


def code_fingerprint(*plugins) -> str:
    """The source of every module that computes a cell (this package's and the given outside
    model's or defence's) and the versions of the libraries doing the arithmetic."""
    import art

    from . import attacks, classifier, defenses, metrics, models, recipes, store
    from .attacks import rejection_aware
    from .defenses import apudae, attractor, dae, feature_dae, mlp, ood, stochastic

    return store_key(code=source_fingerprint(sys.modules[__name__], attacks, rejection_aware, classifier, defenses,
                                             attractor, ood, apudae, dae, feature_dae, mlp, stochastic, recipes, metrics,
                                             models, store, *[p for p in plugins if p is not None]),
                     versions=[torch.__version__, art.__version__, np.__version__], format=CELL_FORMAT)


def _build_model(spec: ModelSpec, suite: Suite, ctx: Context) -> tuple[torch.nn.Module, dict]:
    """The trained model of `spec` and what the run's metadata records about it."""
    if spec.train is not None or isinstance(spec.builder, Recipe):
        if spec.train is not None:
            model, blob, cached = get_or_train(spec.train, ctx.train, ctx.val, ctx.cache_dir, ctx.progress, ctx.device)
            what = {"config": spec.train.to_dict()}
        else:
            model, blob, cached = get_or_fit(spec.builder, spec.params, ctx)
            what = {"params": {**blob["params"], **{k: getattr(model, k) for k in spec.builder.eval_defaults}}}
        return model, {
            "preset": spec.preset, **what, "from_cache": cached,
            "train_seconds": blob.get("train_seconds"),  # when it was trained (older checkpoints lack it)
            "history": _history(blob["history"]),
        }
    try:
        model = spec.builder(train=ctx.train, val=ctx.val, seed=suite.seed, **spec.params)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model {spec.name!r} ({spec.preset}) rejected its parameters {spec.params}: {e}") from e
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model {spec.name!r}: {spec.preset} returned {type(model).__name__}; an outside model must "
                          "return a trained torch.nn.Module mapping (N, 1, 28, 28) images in [0, 1] to logits (N, 10).")
    return model.eval(), {"preset": spec.preset, "origin": spec.origin, "params": spec.params}


def _history(history: dict) -> dict:
    """The short form of a training history: per stage (attractor presets) or for the one training."""
    if "best_epoch" in history:
        history = {"train": history}
    return {k: {"best_epoch": v["best_epoch"], "epochs": len(v.get("val_accuracy", v.get("val_loss", []))),
                **{m: v[m] for m in ("best_val_accuracy", "best_val_loss", "val_metric") if m in v}}
            for k, v in history.items()}


def _prepare(suite: Suite, train_split, val_split, cache_dir, bar, console, plain_log: bool, meta: dict,
             dev: torch.device) -> dict[str, Defended]:
    """Train (or load) every model of the suite first, on `dev`: transfer attacks need their source's network."""
    from .device import activate, kind, move_defence

    activate(dev)
    prepared = {}
    for spec in suite.models:
        code = code_fingerprint(spec.builder, spec.defence.factory)
        task = bar.add_task(f"train {spec.name}", total=None)

        def on_epoch(stage, epoch, max_epochs, value, task=task, name=spec.name):
            line = f"train {name}: {stage} epoch {epoch} (validation {value:.4f})"
            bar.update(task, description=line)
            if plain_log:
                console.print(line, highlight=False)

        t0 = time.perf_counter()
        ctx = Context(train_split, val_split, suite.seed, cache_dir, on_epoch, str(dev))
        model, info = _build_model(spec, suite, ctx)
        model.to(dev)
        from_cache = info.get("from_cache", False)
        bar.update(task, description=f"{spec.name}: {'loaded from cache' if from_cache else 'ready'}", total=1, completed=1)
        try:
            defence = spec.defence.build(model, ctx)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model {spec.name!r}: defence {spec.defence.name!r} cannot be built: {e}") from e
        move_defence(defence, dev)
        rejector = None
        if isinstance(defence, AttractorDefence):
            rejector = PearsonRejector(defence, threshold=suite.rejector.threshold or 0.0)
            if suite.rejector.target_tpr is not None:
                rejector.fit(val_split.x, target_tpr=suite.rejector.target_tpr)
        weights = weights_fingerprint(model)
        defence_weights = [weights_fingerprint(n) for n in getattr(defence, "networks", ())]  # trained defences
        meta["models"][spec.name] = {**info, "defence": {"name": spec.defence.name, "origin": spec.defence.origin,
                                                         "params": spec.defence.params, "weights": defence_weights},
                                     "randomized": bool(getattr(model, "randomized", False)),
                                     "threshold": None if rejector is None else rejector.threshold,
                                     "seconds_train_or_load": round(time.perf_counter() - t0, 1), "weights": weights}
        code = store_key(code=code, device=kind(dev))  # numbers repeat bit for bit within a device kind
        fingerprint = store_key(code=code, weights=weights, defence=[spec.defence.name, spec.defence.origin, spec.defence.params,
                                                                     *defence_weights],
                                threshold=None if rejector is None else repr(rejector.threshold))
        prepared[spec.name] = Defended(model, defence, rejector, fingerprint, store_key(code=code, weights=weights))
    return prepared


@dataclass
class Cell:
    """One (model, attack, eps, dataset) cell: `key` in the cell store, `seed` for its generators,
    `group` the cells that share an intermediate (a transfer attack's examples, a minimal-perturbation
    attack's run over every eps) and so go to the same worker."""

    model: str
    attack: AttackSpec | None
    eps: float
    dataset: str
    key: str
    seed: int
    group: str


@dataclass
class Workspace:
    """What computing any cell of a run needs; built once by the main process, and pickled once per
    worker process (`attractor_bench.parallel`) so that workers never train or load models."""

    suite: Suite
    sets: dict
    subsets: dict
    images: dict
    prepared: dict[str, Defended]


def _what(attack: AttackSpec) -> dict:
    return dict(name=attack.name, origin=attack.origin, params=attack.params, target=attack.target.value,
                source=attack.source, n=attack.n,
                code=None if attack.origin == "built-in" else source_fingerprint(attack.entry.factory))


def _intermediate_key(ws: Workspace, c: Cell) -> str | None:
    """The stored examples a cell starts from, shared with other cells (None: the cell's own attack)."""
    a = c.attack
    if a is None or c.eps == 0:
        return None
    data_key = ws.images[(c.dataset, a.n)]
    if a.target is Target.TRANSFER:
        s = _cell_seed(ws.suite.seed, a.source, a.label, c.eps, c.dataset)
        return store_key(stage="transfer", model=ws.prepared[a.source].network_fingerprint, attack=_what(a), eps=c.eps,
                         dataset=c.dataset, images=data_key, seed=s)
    if not a.entry.bounded:
        s = _cell_seed(ws.suite.seed, c.model, a.label, c.dataset)
        return store_key(stage="unbounded", model=ws.prepared[c.model].fingerprint, attack=_what(a), dataset=c.dataset,
                         images=data_key, seed=s)
    return None


def plan(ws: Workspace) -> dict[str, list[tuple[AttackSpec | None, float, list[Cell]]]]:
    """Every cell of the run, per model and (attack, eps), MNIST first: the order of the table."""
    suite, grid = ws.suite, {}
    for spec in suite.models:
        d = ws.prepared[spec.name]
        grid[spec.name] = []
        for attack, eps in [(None, 0.0)] + [(a, e) for a in suite.attacks if applies(a, spec) for e in a.eps]:
            label = attack.label if attack else "none"
            cells = []
            for ds in datasets(suite, attack):
                seed = _cell_seed(suite.seed, spec.name, label, eps, ds)
                key = store_key(stage="cell", model=d.fingerprint, attack=None if attack is None else _what(attack), eps=eps,
                                dataset=ds, images=ws.images[(ds, attack.n if attack else None)], seed=seed)
                c = Cell(spec.name, attack, eps, ds, key, seed, key)
                c.group = _intermediate_key(ws, c) or key
                cells.append(c)
            grid[spec.name].append((attack, eps, cells))
    return grid


def datasets(suite: Suite, attack: AttackSpec | None) -> list[str]:
    return ["mnist", *suite.data.ood] if attack is None or attack.ood else ["mnist"]


def applies(attack: AttackSpec, spec: ModelSpec) -> bool:
    """An attack on the attractor defence's rejector runs only on the models that have it."""
    return not attack.entry.needs_rejector or spec.defence.name == "attractor"


def compute_cell(ws: Workspace, c: Cell, store: CellStore) -> tuple[dict[str, np.ndarray], float]:
    """Attack and evaluate one cell, store it (atomically) and return its outputs and seconds. Every
    generator is seeded from the cell, so the result does not depend on what ran before it or where."""
    t0 = time.perf_counter()
    seed_everything(c.seed)  # randomized models draw from the generators in every cell
    d, attack, eps = ws.prepared[c.model], c.attack, c.eps
    idx = ws.subsets[(c.dataset, attack.n if attack else None)]
    x = ws.sets[c.dataset].x[idx]
    y = ws.sets[c.dataset].y[idx] if c.dataset == "mnist" else None
    x_adv = x
    if attack is not None and eps > 0:
        shared = _intermediate_key(ws, c)

        def stored_examples(compute) -> np.ndarray:
            hit = store.get(shared)
            if hit is not None:
                return hit[0]["x_adv"]
            x_adv = compute()
            store.put(shared, {"x_adv": x_adv})
            return x_adv

        if attack.target is Target.TRANSFER:
            src = ws.prepared[attack.source]
            s = _cell_seed(ws.suite.seed, attack.source, attack.label, eps, c.dataset)
            x_adv = stored_examples(lambda: _attack(attack, eps, src.classifiers[Target.NETWORK], x, y, s))
        elif attack.entry.bounded:
            x_adv = _attack(attack, eps, d.classifiers[attack.target], x, y, c.seed, d.rejector)
        else:
            s = _cell_seed(ws.suite.seed, c.model, attack.label, c.dataset)
            x_adv = within_budget(stored_examples(lambda: _attack(attack, eps, d.classifiers[attack.target], x, y, s,
                                                                  d.rejector)), x, eps, attack.entry.norm)
        _check_budget(attack.label, x_adv, x, eps, attack.entry.norm)
    out = {**evaluate(d, x_adv), **perturbation_sizes(x, x_adv)}
    seconds = round(time.perf_counter() - t0, 2)
    store.put(c.key, out, {"seconds": seconds, "cell": [c.model, attack.label if attack else "none", eps, c.dataset]})
    return out, seconds


def run_suite(
    suite: Suite | str | Path,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
    console: Console | None = None,
    progress: bool = True,
    fresh: bool = False,
    device: str | None = None,
    workers: int = 1,
    cluster: str | None = None,
) -> RunResult:
    """Run every cell of `suite`; return the tidy table (columns model, attack, eps, dataset,
    metric, value) and run metadata. Writing files is `attractor_bench.report`'s job.

    Each finished cell is stored in the cache (`attractor_bench.store`) as soon as it is done; a
    rerun takes finished cells from there and computes only the rest, with the same table as an
    uninterrupted run. `fresh=True` recomputes every cell (trained models are still reused).

    `device`: `auto` (default: CUDA when present), `cpu`, `cuda` or `cuda:<i>`, for training and
    attacks. `workers > 1` computes the cells in that many local processes; `cluster` (a Dask
    scheduler address, or `local` for a local Dask cluster of `workers` processes) on a cluster.
    Either way the models are trained once, here, and the table is assembled here from the stored
    cells, in the same order: the same table as the sequential run's."""
    from . import parallel
    from .device import resolve_device

    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    dev = resolve_device(device or suite.device)
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1 (got {workers}).")
    parallel.check_cluster(cluster)
    console = console or Console(stderr=True)
    t_start = time.perf_counter()
    torch.manual_seed(suite.seed)

    train_split, val_split = data_mod.mnist_train_val(data_root, download)
    sets = {"mnist": data_mod.load("mnist", "test", data_root, download).head(suite.data.n_test)}
    for name in suite.data.ood:
        sets[name] = data_mod.load(name, "test", data_root, download).head(suite.data.n_ood)
    subsets = {(ds, n): subset(len(split.x), n, suite.seed) for ds, split in sets.items() for n in
               {None, *(a.n for a in suite.attacks)}}
    images = {k: array_fingerprint(sets[k[0]].x[idx], sets[k[0]].y[idx] if k[0] == "mnist" else None)
              for k, idx in subsets.items()}
    store = CellStore(resolve_cache_dir(cache_dir) / "cells", fresh=fresh)
    store.remove_stale_temporaries()

    n_cells = sum(len(datasets(suite, a)) * (len(a.eps) if a else 1) for spec in suite.models
                  for a in [None, *suite.attacks] if a is None or applies(a, spec))
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console, disable=not progress)
    plain_log = progress and not console.is_terminal  # no live bars in a log file: print lines instead
    # Timings go to the metadata, not the table: the table is identical run after run.
    rows, meta = [], {"models": {}, "cell_seconds": [], "flags": {}, "subsets": {}, "attacks": {
        a.label: {"name": a.name, "origin": a.origin, "norm": a.norm, "kind": a.entry.kind, "target": a.target.value,
                  "source": a.source, "n": a.n, "eps": list(a.eps), "ood": a.ood, "params": a.params,
                  "models": [m.name for m in suite.models if applies(a, m)]} for a in suite.attacks}}
    meta["execution"] = {"device": str(dev), "workers": workers, "cluster": cluster}
    figures = {"similarity": [], "iterates": []}
    for a in suite.attacks:
        if a.n is not None:
            meta["subsets"][a.label] = {ds: int(len(subsets[(ds, a.n)])) for ds in datasets(suite, a)}
    n_stored = 0
    figure_attack = _figure_attack(suite)
    figure_cell = None if figure_attack is None else (figure_attack.label, min(figure_attack.eps, key=lambda e: abs(e - 0.1)))
    with deterministic(), (bar if progress else nullcontext()):
        prepared = _prepare(suite, train_split, val_split, cache_dir, bar, console, plain_log, meta, dev)
        ws = Workspace(suite, sets, subsets, images, prepared)
        grid = plan(ws)
        cells_task = bar.add_task("cells", total=n_cells)
        computed_now: set[str] = set()
        if workers > 1 or cluster:
            todo = [c for m in grid.values() for _, _, cs in m for c in cs if fresh or not store.path(c.key).is_file()]
            bar.update(cells_task, description=f"cells on {cluster or f'{workers} worker processes'}",
                       completed=n_cells - len(todo))

            def done(cell: Cell, seconds: float) -> None:
                bar.advance(cells_task)
                if plain_log:
                    console.print(f"{cell.model} {cell.attack.label if cell.attack else 'none'} eps={cell.eps:.4f} "
                                  f"{cell.dataset}: done in {seconds:.1f} s (worker)", highlight=False)

            computed_now = parallel.compute(ws, todo, store, workers=workers, cluster=cluster, on_done=done)
            store.mark_written(computed_now)
            bar.update(cells_task, completed=0)
        for spec in suite.models:
            d = prepared[spec.name]
            records: dict[str, list[Record]] = {ds: [] for ds in sets}
            for attack, eps, cells in grid[spec.name]:
                label = attack.label if attack else "none"
                entry = attack.entry if attack else None
                outputs = {}
                for c in cells:
                    ds = c.dataset
                    bar.update(cells_task, description=f"{spec.name} {label} eps={eps:.4f} {ds}")
                    idx = subsets[(ds, attack.n if attack else None)]
                    y = sets[ds].y[idx] if ds == "mnist" else None
                    hit = store.get(c.key)
                    from_store = hit is not None and c.key not in computed_now  # not computed by this run's workers
                    n_stored += from_store
                    out, seconds = (hit[0], hit[1]["seconds"]) if hit is not None else compute_cell(ws, c, store)
                    metrics = cell_metrics(out, outputs.get("mnist"), y, d.threshold)
                    if attack is not None and attack.n is not None:
                        metrics["n_samples"] = len(idx)
                    meta["cell_seconds"].append(dict(model=spec.name, attack=label, eps=eps, dataset=ds, seconds=seconds,
                                                     stored=from_store))
                    outputs[ds] = out
                    if d.rejector is not None and (attack is None or (attack.label, eps) == figure_cell):
                        figures["similarity"].append({"model": spec.name, "condition": "clean" if attack is None else
                                                      f"{label}, eps {eps:.3g}", "dataset": ds, "scores": out["similarity"],
                                                      "threshold": d.threshold})
                    rows += _rows(spec.name, label, eps, ds, metrics)
                    records[ds].append(Record(
                        label, eps, entry.norm if entry else "none", entry.kind if entry else "clean",
                        bool(entry and entry.single_step), attack.target.value if attack else "none", idx,
                        out["pred"] == y if y is not None else None, accepted(out, d.threshold)))
                    bar.advance(cells_task)
                    if plain_log and c.key not in computed_now:
                        how = "from the store" if hit is not None else f"done in {seconds:.1f} s"
                        console.print(f"{spec.name} {label} eps={eps:.4f} {ds}: {how}", highlight=False)
            rows += _aggregate(spec.name, suite, d, sets, records, meta, store, images[("mnist", None)])
            if isinstance(d.defence, AttractorDefence) and figure_attack is not None:
                figures["iterates"].append(_iterates(spec.name, d, figure_attack, sets["mnist"], suite.seed))
    meta["cells"] = {"total": n_cells, "from_store": n_stored, "computed": n_cells - n_stored}
    meta["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    table = pd.DataFrame(rows, columns=["model", "attack", "eps", "dataset", "metric", "value"])
    return RunResult(suite, table, meta, figures)


def _figure_attack(suite: Suite) -> AttackSpec | None:
    """The attack the figures show: the first L-inf attack that also ran on the OOD sets (the
    paper's Figure 13 uses FGSM), else the first bounded L-inf one."""
    linf = [a for a in suite.attacks if a.norm == "linf" and a.entry.bounded and a.target is not Target.TRANSFER
            and not a.entry.needs_rejector]
    return next((a for a in linf if a.ood), linf[0] if linf else None)


ITERATES = 5  # iterates shown per attacked input (the paper's Figures 11 and 12 show a few)


def _iterates(name: str, d: Defended, attack: AttackSpec, mnist, seed: int) -> dict:
    """The first MNIST test image attacked by `attack` at 0 and each of its eps (through the same
    classifier as its cells), and its first ITERATES iterates x_k = G^k(x_0) with the class
    predicted from each: the paper's Figures 11 and 12."""
    x, y = mnist.x[:1], mnist.y[:1]
    eps_list = [0.0, *attack.eps]
    rows = []
    for eps in eps_list:
        s = _cell_seed(seed, name, "figure", attack.label, eps)
        seed_everything(s)
        xa = x if eps == 0 else _attack(attack, eps, d.classifiers[attack.target], x, y, s, d.rejector)
        cur = torch.from_numpy(xa)
        steps = [cur]
        with torch.no_grad():
            for _ in range(ITERATES):
                cur = d.model.reconstruct(cur)
                cur = cur.clamp(0, 1) if d.defence.clip else cur
                steps.append(cur)
            rows.append((torch.cat(steps).view(-1, 28, 28).numpy(), d.model(torch.cat(steps)).argmax(1).numpy()))
    return {"model": name, "attack": attack.label, "eps": eps_list, "images": np.stack([r[0] for r in rows]),
            "preds": np.stack([r[1] for r in rows]), "label": int(y[0])}


def _aggregate(name: str, suite: Suite, d: Defended, sets: dict, records: dict[str, list[Record]], meta: dict,
               store: CellStore, images: str) -> list[dict]:
    """Worst-case rows and sanity-flag rows of one model."""
    rows = []
    clean, attacked = records["mnist"][0], records["mnist"][1:]
    for label, eps, metrics in worst_case(clean, attacked):
        rows += _rows(name, label, eps, "mnist", metrics)
    for ds in sets:
        if ds != "mnist":
            for label, eps, metrics in worst_case_ood(records[ds][1:]):
                rows += _rows(name, label, eps, ds, metrics)
    targets = sorted({a.target for a in suite.attacks if a.target.white_box and a.entry.kind == "gradient"}, key=str)
    mnist = sets["mnist"]
    shares = {}
    for t in targets:
        k = store_key(stage="zero_gradient_share", model=d.fingerprint, target=t.value, images=images)
        hit = store.get(k)
        if hit is None:
            seed_everything(_cell_seed(suite.seed, name, "zero_gradient_share", t.value))
            shares[t.value] = zero_gradient_share(d.classifiers[t], mnist.x, mnist.y)
            store.put(k, {"share": np.array(shares[t.value])})
        else:
            shares[t.value] = float(hit[0]["share"])
    flags, why = sanity_flags(clean, attacked, shares)
    meta["flags"][name] = why
    rows += _rows(name, "sanity", 0.0, "mnist", {**{f"zero_gradient_share_{t}": v for t, v in shares.items()}, **flags,
                                                   "potentially_unreliable": int(any(flags.values()))})
    return rows
