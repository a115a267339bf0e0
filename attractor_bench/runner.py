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

import pandas as pd
import torch
from rich.console import Console

from . import components
from . import data as data_mod
from . import parallel
from .aggregate import aggregate
from .cache import resolve_cache_dir
from .cells import Cell, Workspace, applies, compute_cell, datasets, plan, subset
from .config import AttackSpec, ModelSpec, Suite, load_suite
from .contracts import plugin_errors
from .determinism import deterministic
from .device import activate, kind, resolve_device
from .figures_data import figure_attack, figure_cell, iterates
from .files import array_fingerprint
from .metrics import accepted, cell_metrics
from .plugins import BUILT_IN
from .preparation import check_run, prepare
from .progress import Log
from .protocol import satisfied
from .provenance import environment
from .result import COLUMNS, RunResult, rows_of
from .robustness import Record
from .store import CellStore
from .tables import fmt_eps


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
    """Run metadata known before any cell: attacks, subsets, execution (the models each attack runs
    on: `_attacked_models`, once they are prepared). Timings go here, not into the table, so that
    the table is identical run after run."""
    attacks = {a.label: {"name": a.name, "origin": a.origin, "norm": a.norm, "kind": a.entry.kind, "target": a.target.value,
                         "loss": a.loss, "source": a.source, "n": a.n, "eps": list(a.eps), "ood": a.ood, "params": a.params,
                         "cascade": suite.cascades(a), "cost": a.entry.cost, "models": []}
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
                    computed_now: set[str], figures: dict) -> tuple[list[dict], dict[str, list[Record]], dict[str, dict], int]:
    """One model's cell rows (reading each cell from the store or computing it), its records, and the
    outputs of its cells that hold an attack's report (AutoAttack's checks read them)."""
    d, rows, n_stored, reports = ws.prepared[spec.name], [], 0, {}
    records: dict[str, list[Record]] = {ds: [] for ds in ws.sets}
    shown = figure_cell(ws.suite)
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
            if d.rejector is not None and d.rejector.similarity and (attack is None or (c.label, eps) == shown):
                figures["similarity"].append({"model": spec.name, "condition": "clean" if attack is None else
                                              f"{c.label}, eps {fmt_eps(eps)}", "dataset": c.dataset, "scores": -out["score"],
                                              "threshold": d.rejector.shown_threshold})
            rows += rows_of(spec.name, c.label, eps, c.dataset, metrics, "cell")
            records[c.dataset].append(_record(attack, eps, idx, out, y, d.threshold, bool(c.after)))
            if c.dataset == "mnist" and "aa_broken_by" in out:
                reports[c.key] = out
            log.bar.advance(task)
            if c.key not in computed_now:
                log.line(f"{spec.name} {c.label} eps {fmt_eps(eps)} {c.dataset}: "
                         + ("from the store" if from_store else f"done in {seconds:.1f} s"))
    return rows, records, reports, n_stored


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
    checked = check_run(suite, workers, cluster)
    log = Log(console or Console(stderr=True), progress)
    log.say(f"{suite.name}: {checked.summary()}.")
    with plugin_errors(suite):  # outside code raising from here on: one message naming it
        return _run(suite, dev, log, data_root, cache_dir, download, fresh, workers, cluster)


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
    rows, figures, n_stored, flags = [], {"similarity": [], "iterates": []}, 0, {}
    with deterministic(), log:
        activate(dev)
        ws, meta["models"] = prepare(suite, (train_split, val_split), (sets, subsets, images), cache_dir, log, dev)
        for a in suite.attacks:  # the models each attack runs on (an attack on the rejector: those that have one)
            meta["attacks"][a.label]["models"] = [m.name for m in suite.models if applies(a, _rejects(ws, m.name))]
        meta["protocol"] = {m.name: satisfied({**meta, "seed": suite.seed}, m.name, _rejects(ws, m.name))
                            for m in suite.models}  # the named protocol each model's evaluation equals (or None)
        meta["components"] = components.used_by_run([c for m in meta["models"].values() for c in m["components"]],
                                                    [a.name for a in suite.attacks if a.origin == BUILT_IN])
        prepared = ws.prepared
        grid = plan(ws)
        n_cells, todo = _announce_cells(grid, store, log, fresh)
        computed_now = _compute_elsewhere(ws, todo, n_cells, store, log, workers, cluster)
        task = log.bar.add_task("cells", total=n_cells)
        shown = figure_attack(suite)
        for spec in suite.models:
            cell_rows, records, reports, stored = _assemble_model(ws, spec, grid[spec.name], store, log, task, meta,
                                                                  computed_now, figures)
            more, flags[spec.name] = aggregate(ws, spec.name, records, reports, meta, store, grid[spec.name], log)
            rows += cell_rows + more
            n_stored += stored
            if hasattr(prepared[spec.name].defence, "iterate") and shown is not None:  # a fixed-point defence
                figures["iterates"].append(iterates(spec.name, prepared[spec.name], shown, sets["mnist"],
                                                     suite.seed))
    meta["cells"] = {"total": n_cells, "from_store": n_stored, "computed": n_cells - n_stored,
                     "failed_verification": store.rejected}
    meta["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    return RunResult(suite, pd.DataFrame(rows, columns=COLUMNS), meta, figures, flags)


def _rejects(ws: Workspace, model: str) -> bool:
    """Whether the prepared `model` has a rejector."""
    return ws.prepared[model].rejector is not None


def _announce_cells(grid: dict, store: CellStore, log: Log, fresh: bool) -> tuple[int, list[Cell]]:
    """Say how many of the run's cells are in the store and how many it computes; return the total
    and the cells to compute."""
    cells = [c for m in grid.values() for _, _, cs in m for c in cs]
    todo = [c for c in cells if fresh or not store.path(c.key).is_file()]
    log.say(f"{len(cells)} cells: {len(cells) - len(todo)} in the cell store, {len(todo)} to compute.")
    return len(cells), todo


