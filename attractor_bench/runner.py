"""The suite runner: plan and orchestrate. Suite -> (cached) trained models with their defences ->
every (model, attack, eps, dataset) cell (`cells.py`: computed here, by worker processes or on a
Dask cluster through `parallel.py`, or read from the cell store) -> metrics -> tidy rows -> the
run's table.

The table has one row per (model, attack, eps, dataset, metric) and a `kind` column: `cell` for
the metrics of one cell (attack `none`, eps 0: the clean images), `worst_case` for the worst case
per sample over a norm's attacks at one eps (`robustness.py`), `sanity` for the sanity flags of a
model (attack `sanity`, eps 0), `indicator` for the attack-failure indicators (`indicators.py`:
per indicator `<name>` the images or cells that triggered it, `<name>_of` how many were checked,
`<name>_raised` 0/1, `<name>_value` a statistic where there is one) and `verdict` for the verdict
(attack `verdict_<norm>`, metric `potentially_unreliable`). Writing files is `report.py`'s job, the
per-model records `summary.py`'s.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import components
from . import data as data_mod
from . import indicators
from . import parallel
from .cache import Context, get_or_fit, get_or_train, resolve_cache_dir
from .cells import (Cell, Defended, Workspace, applies, cell_seed, cell_code, compute_cell, datasets, defended_code,
                    plan, run_attack, seed_everything, subset, zero_gradient_share)
from .config import AttackSpec, ModelSpec, Suite, Target, load_suite
from .contracts import Checked, check_suite, plugin_errors
from .defences import AttractorDefence
from .determinism import deterministic
from .device import activate, kind, move_defence, resolve_device
from .errors import ConfigError
from .files import array_fingerprint, key, weights_fingerprint
from .metrics import accepted, cell_metrics
from .plugins import BUILT_IN
from .protocol import satisfied
from .provenance import environment
from .published import BEST_ROBUST
from .recipes import Recipe
from .result import COLUMNS, RunResult
from .robustness import Record, sanity_flags, worst_case, worst_case_ood, worst_case_samples
from .store import CellStore
from .tables import fmt_eps

class Log:
    """Progress bars with totals on a terminal; one line per step in a log file."""

    def __init__(self, console: Console, progress: bool):
        self.console, self.enabled = console, progress
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), console=console, disable=not progress)
        self.plain = progress and not console.is_terminal  # no live bars in a log file: print lines instead

    def __enter__(self):
        return self.bar.__enter__() if self.enabled else None

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc) if self.enabled else None

    def line(self, text: str) -> None:
        if self.plain:
            self.console.print(text, highlight=False)

    def say(self, text: str) -> None:
        """A line shown on a terminal and in a log file alike (what the run will do)."""
        if self.enabled:
            self.console.print(text, highlight=False)


def _rows(model: str, attack: str, eps: float, dataset: str, metrics: dict, kind_: str) -> list[dict]:
    return [dict(model=model, attack=attack, eps=eps, dataset=dataset, metric=k, value=float(v), kind=kind_)
            for k, v in metrics.items()]


def _history(history: dict) -> dict:
    """The short form of a training history: per stage (attractor presets) or for the one training."""
    if "best_epoch" in history:
        history = {"train": history}
    return {k: {"best_epoch": v["best_epoch"], "epochs": len(v.get("val_accuracy", v.get("val_loss", []))),
                **{m: v[m] for m in ("best_val_accuracy", "best_val_loss", "val_metric") if m in v}}
            for k, v in history.items()}


def _build_model(spec: ModelSpec, suite: Suite, ctx: Context) -> tuple[torch.nn.Module, dict]:
    """The trained model of `spec` and what the run's metadata records about it."""
    if spec.train is not None or isinstance(spec.builder, Recipe):
        if spec.train is not None:
            model, blob, cached = get_or_train(spec.train, ctx.train, ctx.val, ctx.cache_dir, ctx.progress, ctx.device)
            what = {"config": spec.train.to_dict()}
        else:
            model, blob, cached = get_or_fit(spec.builder, spec.params, ctx)
            what = {"params": {**blob["params"], **{k: getattr(model, k) for k in spec.builder.eval_defaults}}}
        return model, {"preset": spec.preset, **what, "from_cache": cached, "from_zoo": blob.get("zoo"),
                       "train_seconds": blob.get("train_seconds"),
                       "history": _history(blob["history"])}
    try:
        model = spec.builder(train=ctx.train, val=ctx.val, seed=suite.seed, **spec.params)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model {spec.name!r} ({spec.preset}) rejected its parameters {spec.params}: {e}") from e
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model {spec.name!r}: {spec.preset} returned {type(model).__name__}; an outside model must "
                          "return a trained torch.nn.Module mapping (N, 1, 28, 28) images in [0, 1] to logits (N, 10).")
    return model.eval(), {"preset": spec.preset, "origin": spec.origin, "params": spec.params}


def _check_run(suite: Suite, workers: int, cluster: str | None) -> Checked:
    """What can be refused before anything is loaded or trained: the options, then every contract
    of the suite's models, defences and attacks (`contracts.check_suite`: signatures, optional
    dependencies, a dry run on two images through untrained networks)."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1 (got {workers}).")
    parallel.check_cluster(cluster)
    check_training_cost(suite)
    return check_suite(suite)


def check_training_cost(suite: Suite) -> None:
    """`loss: training` drops L_eigen, which has no input gradient only where the network is piecewise
    linear (ReLU hidden units always; the output activation too unless it is sigmoid): refuse it for a
    sigmoid-output model instead of attacking a cost the model was not trained with."""
    if not any(a.loss == "training" for a in suite.attacks):
        return
    curved = [m.name for m in suite.models if m.train is not None and m.train.output_activation.value == "sigmoid"]
    if curved:
        raise ConfigError(f"loss: training leaves out L_eigen, which has an input gradient through a sigmoid output "
                          f"({', '.join(curved)}: train.output_activation: sigmoid). Attack those models with "
                          "loss: cross_entropy, or train them with a ReLU or linear output.")


def _prepare_one(spec: ModelSpec, suite: Suite, ctx: Context, log: Log, dev: torch.device) -> tuple[Defended, dict]:
    """Train (or load) one model on `dev` and build its defence and rejector; (it, its metadata)."""
    task = log.bar.add_task(f"train or load {spec.name}", total=1)
    current = [None]

    def on_epoch(stage, epoch, max_epochs, value):  # the bar: this stage's epochs out of its maximum
        if stage != current[0]:
            current[0] = stage
            log.bar.reset(task, total=max_epochs)
        line = f"train {spec.name}: {stage}, epoch {epoch} of at most {max_epochs} (validation {value:.4f})"
        log.bar.update(task, description=line, completed=epoch)
        log.line(line)

    on_epoch.say = log.say  # checkpoint lines (a training resumed: attractor_bench.checkpoints)
    t0 = time.perf_counter()
    ctx.progress = on_epoch
    model, info = _build_model(spec, suite, ctx)
    model.to(dev)
    log.bar.update(task, description=f"{spec.name}: {'loaded from cache' if info.get('from_cache') else 'ready'}",
                   total=1, completed=1)
    try:
        defence = spec.defence.build(model, ctx)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model {spec.name!r}: defence {spec.defence.name!r} cannot be built: {e}") from e
    move_defence(defence, dev)
    rejector = suite.rejector.build(defence, ctx.val.x)
    weights = weights_fingerprint(model)
    defence_weights = [weights_fingerprint(n) for n in getattr(defence, "networks", ())]  # trained defences
    threshold = None if rejector is None else rejector.threshold
    meta = {**info, "defence": {"name": spec.defence.name, "origin": spec.defence.origin, "params": spec.defence.params,
                                "weights": defence_weights},
            "randomized": bool(getattr(model, "randomized", False)), "threshold": threshold,
            "seconds_train_or_load": round(time.perf_counter() - t0, 1), "weights": weights}
    code = key(code=cell_code(), device=kind(dev))  # numbers repeat bit for bit within a device kind
    used = components.for_model(spec.preset, spec.defence.name, rejector is not None, spec.origin, spec.defence.origin)
    meta["components"] = used
    builder = [spec.builder] if spec.origin != BUILT_IN and not isinstance(spec.builder, Recipe) else []
    defence_factory = [spec.defence.factory] if spec.defence.origin != BUILT_IN else []
    network = key(code=code, model=defended_code([u for u in used if not u.startswith(("defence.", "rejector."))], *builder),
                  weights=weights)
    fingerprint = key(code=code, model=defended_code(used, *builder, *defence_factory), weights=weights,
                      defence=[spec.defence.name, spec.defence.origin, spec.defence.params, *defence_weights],
                      threshold=None if rejector is None else repr(threshold))
    return Defended(model, defence, rejector, fingerprint, network, spec.training_cost()), meta


def prepare(suite: Suite, splits: tuple, images: tuple, cache_dir, log: Log, dev: torch.device) -> tuple[Workspace, dict]:
    """The Workspace every cell of `suite` is computed from: each model trained (or loaded) on `dev`
    with its defence and rejector, beside the run's images (`load_images`); and what run.json
    records about each model. `splits` are MNIST's (train, validation) splits."""
    prepared, models = {}, {}
    for spec in suite.models:  # every model first: transfer attacks need their source's network
        ctx = Context(*splits, suite.seed, cache_dir, device=str(dev))
        prepared[spec.name], models[spec.name] = _prepare_one(spec, suite, ctx, log, dev)
    return Workspace(suite, *images, prepared), models


def load_images(suite: Suite, data_root, download: bool) -> tuple[dict, dict, dict]:
    """(sets, subsets, image fingerprints): the test images of every dataset and each attack's subset."""
    sets = {"mnist": data_mod.load("mnist", "test", data_root, download).head(suite.data.n_test)}
    for name in suite.data.ood:
        sets[name] = data_mod.load(name, "test", data_root, download).head(suite.data.n_ood)
    subsets = {(ds, n): subset(len(split.x), n, suite.seed) for ds, split in sets.items()
               for n in {None, *(a.n for a in suite.attacks)}}
    images = {k: array_fingerprint(sets[k[0]].x[idx], sets[k[0]].y[idx] if k[0] == "mnist" else None)
              for k, idx in subsets.items()}
    return sets, subsets, images


def _meta(suite: Suite, subsets: dict, dev: torch.device, workers: int, cluster: str | None) -> dict:
    """Run metadata known before any cell: attacks, subsets, execution. Timings go here, not into
    the table, so that the table is identical run after run."""
    attacks = {a.label: {"name": a.name, "origin": a.origin, "norm": a.norm, "kind": a.entry.kind, "target": a.target.value,
                         "loss": a.loss, "source": a.source, "n": a.n, "eps": list(a.eps), "ood": a.ood, "params": a.params,
                         "cascade": suite.cascades(a), "cost": a.entry.cost,
                         "models": [m.name for m in suite.models if applies(a, m)]}
               for a in suite.attacks}
    sizes = {a.label: {ds: int(len(subsets[(ds, a.n)])) for ds in datasets(suite, a)} for a in suite.attacks if a.n is not None}
    return {"models": {}, "cell_seconds": [], "flags": {}, "verdict": {}, "subsets": sizes, "attacks": attacks, "worst_case": suite.worst_case,
            "execution": {"device": str(dev), "workers": workers, "cluster": cluster}}


def _compute_elsewhere(ws: Workspace, todo: list[Cell], n_cells: int, store: CellStore, log: Log, workers: int,
                       cluster: str | None) -> set[str]:
    """With --workers or --cluster, compute the missing cells `todo` there first; return their keys."""
    if workers <= 1 and not cluster:
        return set()
    task = log.bar.add_task(f"cells on {cluster or f'{workers} worker processes'}", total=n_cells,
                            completed=n_cells - len(todo))

    def done(cell: Cell, seconds: float) -> None:
        log.bar.advance(task)
        log.line(f"{cell.model} {cell.label} eps {fmt_eps(cell.eps)} {cell.dataset}: done in {seconds:.1f} s (worker)")

    computed = parallel.compute(ws, todo, store, workers=workers, cluster=cluster, on_done=done)
    # the workers also stored the examples these cells share (a transfer attack's): the probes read them
    store.mark_written(computed | {c.shared for c in todo if c.shared is not None and c.key in computed})
    log.bar.remove_task(task)
    return computed


def _assemble_model(ws: Workspace, spec: ModelSpec, cells: list, store: CellStore, log: Log, task, meta: dict,
                    computed_now: set[str], figures: dict) -> tuple[list[dict], dict[str, list[Record]], int]:
    """One model's cell rows (reading each cell from the store or computing it) and its records."""
    d, rows, n_stored = ws.prepared[spec.name], [], 0
    records: dict[str, list[Record]] = {ds: [] for ds in ws.sets}
    figure_cell = _figure_cell(ws.suite)
    for attack, eps, group in cells:
        mnist_out = None
        for c in group:
            log.bar.update(task, description=f"{spec.name} {c.label} eps {fmt_eps(eps)} {c.dataset}")
            idx, y = ws.indices(c.dataset, attack), ws.labels(c.dataset, attack)
            hit = store.get(c.key)
            from_store = hit is not None and not store.written(c.key)  # not computed by this run (here or by workers)
            n_stored += from_store
            out, seconds = (hit[0], hit[1]["seconds"]) if hit is not None else compute_cell(ws, c, store)
            metrics = cell_metrics(out, mnist_out, y, d.threshold)
            if attack is not None and attack.n is not None:
                metrics["n_samples"] = len(idx)
            meta["cell_seconds"].append(dict(model=spec.name, attack=c.label, eps=eps, dataset=c.dataset, seconds=seconds,
                                             stored=from_store))
            if mnist_out is None:  # MNIST comes first: the OOD metrics compare with its scores
                mnist_out = out
            if d.rejector is not None and (attack is None or (c.label, eps) == figure_cell):
                figures["similarity"].append({"model": spec.name, "condition": "clean" if attack is None else
                                              f"{c.label}, eps {fmt_eps(eps)}", "dataset": c.dataset, "scores": out["similarity"],
                                              "threshold": d.threshold})
            rows += _rows(spec.name, c.label, eps, c.dataset, metrics, "cell")
            records[c.dataset].append(_record(attack, eps, idx, out, y, d.threshold, bool(c.after)))
            log.bar.advance(task)
            if c.key not in computed_now:
                log.line(f"{spec.name} {c.label} eps {fmt_eps(eps)} {c.dataset}: "
                         + ("from the store" if from_store else f"done in {seconds:.1f} s"))
    return rows, records, n_stored


def _record(attack: AttackSpec | None, eps: float, idx, out: dict, y, threshold, cascade: bool = False) -> Record:
    entry = attack.entry if attack else None
    return Record(attack.label if attack else "none", eps, entry.norm if entry else "none",
                  entry.kind if entry else "clean", bool(entry and entry.single_step),
                  attack.target.value if attack else "none", idx, out["pred"] == y if y is not None else None,
                  accepted(out, threshold), cascade)


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
    """Run every cell of `suite`; return the tidy table and run metadata (see the module docstring).

    Each finished cell is stored in the cache (`attractor_bench.store`) as soon as it is done; a
    rerun takes finished cells from there and computes only the rest, with the same table as an
    uninterrupted run. `fresh=True` recomputes every cell (trained models are still reused).
    `device`: `auto` (default: CUDA when present), `cpu`, `cuda` or `cuda:<i>`. `workers > 1`
    computes the cells in that many local processes; `cluster` (a Dask scheduler address, or
    `local`) on a cluster. Either way the models are trained once, here, and the table is
    assembled here from the stored cells, in the same order as the sequential run's."""
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    dev = resolve_device(device or suite.device)
    checked = _check_run(suite, workers, cluster)
    log = Log(console or Console(stderr=True), progress)
    log.say(f"{suite.name}: {checked.summary()}.")
    with plugin_errors(suite):  # outside code raising from here on: one message naming it
        return _run(suite, dev, log, data_root, cache_dir, download, fresh, workers, cluster)


def train_suite(suite: Suite | str | Path, data_root: str | Path | None = None, cache_dir: str | Path | None = None,
                download: bool = True, console: Console | None = None, progress: bool = True,
                device: str | None = None) -> dict:
    """Train (or load) every model of `suite` and its defence's networks into the cache, and stop
    there: the first step of a long run (`scripts/reproduce.sh`), resumable epoch by epoch
    (`attractor_bench.checkpoints`). Returns what run.json would record about each model."""
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    dev = resolve_device(device or suite.device)
    _check_run(suite, 1, None)
    log = Log(console or Console(stderr=True), progress)
    splits = data_mod.mnist_train_val(data_root, download)
    with plugin_errors(suite), deterministic(), log:
        activate(dev)
        return {spec.name: _prepare_one(spec, suite, Context(*splits, suite.seed, cache_dir, device=str(dev)), log, dev)[1]
                for spec in suite.models}


def _run(suite: Suite, dev: torch.device, log: Log, data_root, cache_dir, download: bool, fresh: bool, workers: int,
         cluster: str | None) -> RunResult:
    """`run_suite` once its checks have passed."""
    t_start = time.perf_counter()
    torch.manual_seed(suite.seed)
    train_split, val_split = data_mod.mnist_train_val(data_root, download)
    sets, subsets, images = load_images(suite, data_root, download)
    store = CellStore(resolve_cache_dir(cache_dir) / "cells", fresh=fresh)
    store.remove_stale_temporaries()
    log.say(f"{suite.name}: {len(suite.models)} models to train or load from the cache ("
            + ", ".join(m.name for m in suite.models) + f"), then {len(suite.attacks)} attacks on their cells.")  # the plan
    meta = {**_meta(suite, subsets, dev, workers, cluster), "n_images": {ds: len(split) for ds, split in sets.items()},
            "environment": environment(kind(dev))}
    rows, figures, n_stored, samples = [], {"similarity": [], "iterates": []}, 0, {}
    with deterministic(), log:
        activate(dev)
        ws, meta["models"] = prepare(suite, (train_split, val_split), (sets, subsets, images), cache_dir, log, dev)
        meta["protocol"] = {m.name: satisfied({**meta, "seed": suite.seed}, m.name, m.defence.name == "attractor")
                            for m in suite.models}  # the named protocol each model's evaluation equals (or None)
        meta["components"] = components.used_by_run([c for m in meta["models"].values() for c in m["components"]],
                                                    [a.name for a in suite.attacks if a.origin == BUILT_IN])
        prepared = ws.prepared
        grid = plan(ws)
        n_cells, todo = _announce_cells(grid, store, log, fresh)
        computed_now = _compute_elsewhere(ws, todo, n_cells, store, log, workers, cluster)
        task = log.bar.add_task("cells", total=n_cells)
        figure_attack = _figure_attack(suite)
        for spec in suite.models:
            cell_rows, records, stored = _assemble_model(ws, spec, grid[spec.name], store, log, task, meta, computed_now,
                                                         figures)
            rows += cell_rows + _aggregate(ws, spec.name, records, meta, store, grid[spec.name], log)
            clean = records["mnist"][0]  # its correctness per image too: clean accuracies are compared image by image
            samples[spec.name] = {("none", 0.0): (clean.idx, clean.correct),
                                  **worst_case_samples(clean, records["mnist"][1:])}
            n_stored += stored
            if isinstance(prepared[spec.name].defence, AttractorDefence) and figure_attack is not None:
                figures["iterates"].append(_iterates(spec.name, prepared[spec.name], figure_attack, sets["mnist"],
                                                     suite.seed))
    meta["cells"] = {"total": n_cells, "from_store": n_stored, "computed": n_cells - n_stored,
                     "failed_verification": store.rejected}
    meta["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    return RunResult(suite, pd.DataFrame(rows, columns=COLUMNS), meta, figures, samples)


def _announce_cells(grid: dict, store: CellStore, log: Log, fresh: bool) -> tuple[int, list[Cell]]:
    """Say how many of the run's cells are in the store and how many it computes; return the total
    and the cells to compute."""
    cells = [c for m in grid.values() for _, _, cs in m for c in cs]
    todo = [c for c in cells if fresh or not store.path(c.key).is_file()]
    log.say(f"{len(cells)} cells: {len(cells) - len(todo)} in the cell store, {len(todo)} to compute.")
    return len(cells), todo


def _figure_attack(suite: Suite) -> AttackSpec | None:
    """The attack the figures show: the first L-inf attack that also ran on the OOD sets (the
    paper's Figure 13 uses FGSM), else the first bounded L-inf one."""
    linf = [a for a in suite.attacks if a.norm == "linf" and a.entry.bounded and a.target is not Target.TRANSFER
            and not a.entry.needs_rejector]
    return next((a for a in linf if a.ood), linf[0] if linf else None)


def _figure_cell(suite: Suite) -> tuple[str, float] | None:
    """The attacked (label, eps) whose similarity scores the histograms show: eps nearest 0.1."""
    a = _figure_attack(suite)
    return None if a is None else (a.label, min(a.eps, key=lambda e: abs(e - 0.1)))


ITERATES = 5  # iterates shown per attacked input (the paper's Figures 11 and 12 show a few)


def _iterates(name: str, d: Defended, attack: AttackSpec, mnist, seed: int) -> dict:
    """The first MNIST test image attacked by `attack` at 0 and each of its eps (through the same
    classifier as its cells), and its first ITERATES iterates x_k = G^k(x_0) with the class
    predicted from each: the paper's Figures 11 and 12."""
    x, y = mnist.x[:1], mnist.y[:1]
    eps_list = [0.0, *attack.eps]
    rows = []
    for eps in eps_list:
        s = cell_seed(seed, name, "figure", attack.label, eps)
        seed_everything(s)
        xa = x if eps == 0 else run_attack(attack, eps, d.classifiers[attack.target], x, y, s, d.rejector)
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


def _zero_gradient_shares(ws: Workspace, name: str, store: CellStore) -> dict[str, float]:
    """Per white-box target of the suite's gradient attacks, the share of clean MNIST images with
    an all-zero input gradient (stored like a cell)."""
    suite, d, mnist = ws.suite, ws.prepared[name], ws.sets["mnist"]
    targets = sorted({a.target for a in suite.attacks if a.target.white_box and a.entry.kind == "gradient"}, key=str)
    shares = {}
    for t in targets:
        seed = cell_seed(suite.seed, name, "zero_gradient_share", t.value)
        k = key(stage="zero_gradient_share", model=d.fingerprint, target=t.value, images=ws.images[("mnist", None)],
                seed=seed)
        hit = store.get(k)
        if hit is None:
            seed_everything(seed)
            shares[t.value] = zero_gradient_share(d.classifiers[t], mnist.x, mnist.y)
            store.put(k, {"share": np.array(shares[t.value])})
        else:
            shares[t.value] = float(hit[0]["share"])
    return shares


def _stored(store: CellStore, k: str, compute) -> dict[str, np.ndarray]:
    hit = store.get(k)
    if hit is not None:
        return hit[0]
    out = compute()
    store.put(k, out)
    return out


def _probes(ws: Workspace, name: str, cells: list, wc: dict, store: CellStore, log: "Log") -> list:
    """The attack-failure indicators of one model's MNIST cells, from probes on the images robust in
    the worst case (stored like cells, keyed by the cell, the images and the probe code)."""
    d, suite, mnist = ws.prepared[name], ws.suite, ws.sets["mnist"]
    randomized = bool(getattr(d.model, "randomized", False))
    findings = []
    for attack, eps, group in cells:
        if attack is None or eps == 0:
            continue
        c = next(c for c in group if c.dataset == "mnist")
        widx, robust = wc[(attack.entry.norm, eps)]
        seed = cell_seed(suite.seed, name, "probe", attack.label, eps)
        chosen = widx[robust]
        chosen = indicators.probe_images(chosen[np.isin(chosen, ws.indices("mnist", attack))], seed)
        if not len(chosen):
            continue
        transfer_x = None
        if attack.target is Target.TRANSFER:
            hit = store.get(c.shared)
            if hit is None:
                continue  # its examples are not stored: nothing to probe
            transfer_x = hit[0]["x_adv"][np.searchsorted(ws.indices("mnist", attack), chosen)]

        def compute():
            log.line(f"{name} {attack.label} eps {fmt_eps(eps)}: probing {len(chosen)} image(s) robust in the worst case")
            seed_everything(seed)
            return indicators.probe_cell(attack, eps, d, mnist.x[chosen], mnist.y[chosen], seed,
                                         ws.prepared.get(attack.source), transfer_x)

        p = _stored(store, indicators.probe_key(c.key, chosen, seed), compute)
        findings += indicators.cell_findings(attack, eps, chosen, p, randomized)
    return findings


def _autoattack_checks(ws: Workspace, cells: list, store: CellStore) -> list:
    """AutoAttack's own checks, from the report stored with each of the model's standard AutoAttack
    cells on MNIST (a cell stored before the report existed has none: nothing to read)."""
    findings = []
    for attack, eps, group in cells:
        c = next((c for c in group if c.dataset == "mnist"), None)
        hit = store.get(c.key) if attack is not None and c is not None else None
        if hit is not None and "aa_broken_by" in hit[0]:
            findings += indicators.autoattack_findings(attack, eps, ws.indices("mnist", attack), hit[0],
                                                       indicators.suite_is_adaptive(ws.suite))
    return findings


def _model_checks(ws: Workspace, name: str, store: CellStore, shares: dict[str, float]) -> list:
    d, suite, mnist = ws.prepared[name], ws.suite, ws.sets["mnist"]
    targets = sorted({a.target for a in suite.attacks if a.target.white_box and a.entry.kind == "gradient"}, key=str)
    idx = np.arange(min(indicators.PROBE_IMAGES, len(mnist.y)))
    seed = cell_seed(suite.seed, name, "model_checks")
    k = indicators.model_key(d.fingerprint, ws.images[("mnist", None)], len(idx), seed, [t.value for t in targets])
    p = _stored(store, k, lambda: indicators.model_probe(d, mnist.x[idx], mnist.y[idx], targets, seed))
    iterates = int(getattr(d.defence, "max_iter", 0) or 0) > 1
    return indicators.model_findings(p, idx, bool(getattr(d.model, "randomized", False)), iterates,
                                     indicators.suite_is_adaptive(suite), shares)


def _aggregate(ws: Workspace, name: str, records: dict[str, list[Record]], meta: dict, store: CellStore,
               cells: list, log: "Log") -> list[dict]:
    """Worst-case rows, sanity-flag rows, indicator rows and verdict rows of one model."""
    rows = []
    clean, attacked = records["mnist"][0], records["mnist"][1:]
    for label, eps, metrics in worst_case(clean, attacked):
        rows += _rows(name, label, eps, "mnist", metrics, "worst_case")
    for ds in ws.sets:
        if ds != "mnist":
            for label, eps, metrics in worst_case_ood(records[ds][1:]):
                rows += _rows(name, label, eps, ds, metrics, "worst_case")
    shares = _zero_gradient_shares(ws, name, store)
    flags, why = sanity_flags(clean, attacked, shares)
    meta["flags"][name] = why
    rows += _rows(name, "sanity", 0.0, "mnist", {**{f"zero_gradient_share_{t}": v for t, v in shares.items()}, **flags,
                                                 "potentially_unreliable": int(any(flags.values()))}, "sanity")
    wc = worst_case_samples(clean, attacked)
    findings = (_probes(ws, name, cells, wc, store, log) + _autoattack_checks(ws, cells, store)
                + _model_checks(ws, name, store, shares)
                + indicators.record_findings(clean, attacked, ws.prepared[name].rejector is not None, BEST_ROBUST)
                + indicators.sanity_findings(flags, why, attacked))
    for f in findings:
        m = {f.name: f.count, f"{f.name}_of": f.n, f"{f.name}_raised": int(f.raised)}
        if f.value is not None:
            m[f"{f.name}_value"] = f.value
        rows += _rows(name, f.attack, 0.0 if f.eps is None else f.eps, "mnist", m, "indicator")
    verdicts = indicators.verdict(findings, sorted(wc), {k: int(v[1].sum()) for k, v in wc.items()})
    for v in verdicts:
        rows += _rows(name, f"verdict_{v['norm']}", v["eps"], "mnist", {"potentially_unreliable": int(v["potentially_unreliable"])},
                      "verdict")
    meta["verdict"][name] = {"by_eps": verdicts, "findings": [f.as_dict() for f in findings]}
    return rows
