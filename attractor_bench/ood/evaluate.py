"""The OOD evaluation of a suite's models: every rejector, clean and under the score attacks in
both directions, on MNIST against every OOD set; records -> the tidy table.

For each model (trained or loaded from the model cache, exactly as `attractor-bench run` builds
it), each rejector (`rejectors.rejectors_for`) and each eps:

- MNIST's test images attacked by every score attack to be rejected, OOD images to be accepted
  (`attacks.py`); per image the worst over the attacks (`worst`: the highest outlier score of an
  MNIST image, the lowest of an OOD image);
- rows per OOD set: `clean`, and per attack (and `worst`) three directions: `id` (ID attacked,
  OOD clean), `ood` (OOD attacked, ID clean) and `joint` (both attacked: the robust AUROC), with
  pytorch-ood's metrics and the shares of ID and OOD images the rejector accepts at its threshold;
- models whose own rejector is that of a fixed-point defence (the attractor's): the project's
  rejection-aware attack and the K+1 attack through ART's DetectorClassifier on the OOD images
  (direction `ood`), and per image the stronger of the two (`stronger`: accepted if either gets
  the image accepted);
- the accuracy/coverage curves (figures): clean, and under the classification attack PGD
  (cross-entropy through the pipeline, the registry's `pgd`) at each eps;
- the validation images (`validation_sets`: MNIST validation images after those that calibrate the
  thresholds, and per OOD set images apart from the test images), scored clean and under the score
  attacks at the first eps, in cells of their own (the test numbers do not depend on them):
  `selection` gives each rejector's robust AUROC on them, on which `report.best_rejectors` chooses
  the model's best rejector, so that no choice is made on the test sets.

Every per-image number is an OOD cell (`ood/cells.py`: model, rejector, attack or none, eps,
dataset, split), stored in the one cell store with its integrity record and seeded per cell, so an
interrupted run computes only the cells it had not finished; `--workers N` computes them in the
same worker processes as a classification run's cells (`parallel.py`). The rows, the selection,
the curves and each model's record are read from the cells' outputs (`model_arrays`).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console

from attractor_bench import components, parallel
from attractor_bench import data as data_mod
from attractor_bench.cache import resolve_cache_dir
from attractor_bench.determinism import deterministic
from attractor_bench.device import activate, resolve_device
from attractor_bench.errors import ConfigError
from attractor_bench.metrics import KEYS, ood_metrics
from attractor_bench.preparation import prepare
from attractor_bench.progress import Log
from attractor_bench.provenance import environment
from attractor_bench.store import CellStore

from . import synthetic
from .attacks import budgets
from .cells import PGD_CE, OODCell, OODWorkspace, compute_ood_cell, model_identity, plan
from .suite import OODSuite

COLUMNS = ["model", "rejector", "threshold", "dataset", "eps", "direction", "attack", *KEYS, "id_accepted", "ood_accepted"]
N_VALIDATION = 2000  # MNIST validation images that calibrate the rejectors without a threshold of their own
CROSS_CHECK = ("rejection_aware", "k_plus_one", "stronger")


@dataclass
class OODResult:
    suite: OODSuite
    table: pd.DataFrame
    meta: dict
    curves: dict = field(default_factory=dict)  # model -> rejector -> condition -> (scores, correct)


def load_sets(suite: OODSuite, data_root, download: bool) -> dict[str, data_mod.Split]:
    """MNIST's test images, then every OOD set (synthetic ones made from the suite's seed)."""
    sets = {"mnist": data_mod.load("mnist", "test", data_root, download).head(suite.n_test)}
    for name in suite.ood:
        sets[name] = (synthetic.load(name, suite.n_ood, suite.seed) if name in synthetic.DISPLAY_NAMES
                      else data_mod.load(name, "test", data_root, download).head(suite.n_ood))
    return sets


def validation_sets(suite: OODSuite, mnist_val: data_mod.Split, data_root, download: bool) -> dict[str, data_mod.Split]:
    """The images each model's best rejector is chosen on, `suite.n_validation` per set, none of them
    a test image: MNIST validation images N_VALIDATION.. (after those that calibrate the thresholds);
    per real OOD set, a seeded sample of its images after the first n_ood (the test images); per
    synthetic set, its validation stream."""
    n = suite.n_validation
    if N_VALIDATION + n > len(mnist_val):
        raise ConfigError(f"{suite.name}: n_validation {n} is more than the {len(mnist_val) - N_VALIDATION} MNIST "
                          "validation images left after those that calibrate the rejectors.")
    sets = {"mnist": mnist_val.take(np.arange(N_VALIDATION, N_VALIDATION + n))}
    for name in suite.ood:
        if name in synthetic.DISPLAY_NAMES:
            sets[name] = synthetic.load(name, n, suite.seed, part="validation")
            continue
        full = data_mod.load(name, "test", data_root, download)
        if suite.n_ood + n > len(full):
            raise ConfigError(f"{suite.name}: n_ood {suite.n_ood} and n_validation {n} are more than the {len(full)} "
                              f"images of {name}; the validation images must be apart from the test images.")
        rng = np.random.default_rng([suite.seed, zlib.crc32(f"validation/{name}".encode())])
        sets[name] = full.take(np.sort(rng.choice(np.arange(suite.n_ood, len(full)), n, replace=False)))
    return sets


def _name(c: OODCell) -> str:
    """Where a cell's scores go in a model's arrays (what `rows`, `selection` and `curves` read)."""
    cond = "clean" if c.attack == "none" else f"{c.attack}/{c.eps:g}"
    return f"{'score' if c.split == 'test' else 'val/score'}/{c.rejector}/{c.dataset}/{cond}"


def model_arrays(ws: OODWorkspace, cells: list[OODCell], store: CellStore, log: Log, task) -> tuple[dict, int]:
    """One model's per-image numbers from its cells (each read from the store, else computed here), keyed
    as `rows`, `selection` and `curves` read them; and how many cells came from the store."""
    arrays, n_stored, y = {}, 0, ws.sets["test"]["mnist"].y
    for c in cells:
        log.bar.update(task, description=c.label)
        hit = store.get(c.key)
        n_stored += hit is not None and not store.written(c.key)  # not computed by this run (here or by workers)
        out, seconds = (hit[0], None) if hit is not None else compute_ood_cell(ws, c, store)
        if seconds is not None:
            log.line(f"{c.label}: done in {seconds:.1f} s")
        arrays[_name(c)] = out["score"]
        if c.attack == "none" and (c.split, c.dataset) == ("test", "mnist"):
            arrays[f"threshold/{c.rejector}"] = np.atleast_1d(out["threshold"])
            arrays["correct/clean"] = out["pred"] == y
        elif c.attack == PGD_CE:
            arrays[f"correct/pgd_ce/{c.eps:g}"] = out["pred"] == y
        log.bar.advance(task)
    return arrays, n_stored


def selection(arrays: dict, suite: OODSuite) -> dict[str, float]:
    """Per rejector, the robust AUROC (joint, per image the worst over the score attacks) at the
    first eps, averaged over the OOD sets, on the validation images alone: the best rejector's rule."""
    e, out = suite.eps[0], {}
    for r in (k.split("/")[1] for k in arrays if k.startswith("threshold/")):
        v = lambda ds: [arrays[f"val/score/{r}/{ds}/{a}/{e:g}"] for a in suite.attacks]
        id_worst = np.max(v("mnist"), axis=0)
        out[r] = float(np.mean([ood_metrics(id_worst, np.min(v(ds), axis=0))["AUROC"] for ds in suite.ood]))
    return out


def _metric_row(model, r, threshold, ds, e, direction, attack, id_s, ood_s) -> dict:
    return {"model": model, "rejector": r, "threshold": threshold, "dataset": ds, "eps": e, "direction": direction,
            "attack": attack, **ood_metrics(id_s, ood_s), "id_accepted": float(np.mean(id_s <= threshold)),
            "ood_accepted": float(np.mean(ood_s <= threshold))}


def rows(model: str, arrays: dict, suite: OODSuite) -> list[dict]:
    """The table's rows of one model from its arrays (see the module docstring)."""
    out = []
    rejectors = [k.split("/")[1] for k in arrays if k.startswith("threshold/")]
    for r in rejectors:
        t = float(arrays[f"threshold/{r}"][0])
        s = lambda ds, cond: arrays[f"score/{r}/{ds}/{cond}"]
        id_clean = s("mnist", "clean")
        for ds in suite.ood:
            ood_clean = s(ds, "clean")
            out.append(_metric_row(model, r, t, ds, 0.0, "clean", "none", id_clean, ood_clean))
            for e in suite.eps:
                id_att = {a: s("mnist", f"{a}/{e:g}") for a in suite.attacks}
                ood_att = {a: s(ds, f"{a}/{e:g}") for a in suite.attacks}
                id_att["worst"] = np.max(list(id_att.values()), axis=0)
                ood_att["worst"] = np.min(list(ood_att.values()), axis=0)
                for a in [*suite.attacks, "worst"]:
                    out.append(_metric_row(model, r, t, ds, e, "id", a, id_att[a], ood_clean))
                    out.append(_metric_row(model, r, t, ds, e, "ood", a, id_clean, ood_att[a]))
                    out.append(_metric_row(model, r, t, ds, e, "joint", a, id_att[a], ood_att[a]))
                if f"score/{r}/{ds}/k_plus_one/{e:g}" in arrays:
                    ra, k1 = s(ds, f"rejection_aware/{e:g}"), s(ds, f"k_plus_one/{e:g}")
                    for a, sc in zip(CROSS_CHECK, (ra, k1, np.minimum(ra, k1))):
                        out.append(_metric_row(model, r, t, ds, e, "ood", a, id_clean, sc))
    return out


def curves(arrays: dict, suite: OODSuite) -> dict:
    """Per rejector, per condition (clean, PGD at each eps): (MNIST scores, correct) for the
    accuracy/coverage figure."""
    out = {}
    for k in arrays:
        if k.startswith("threshold/"):
            r = k.split("/")[1]
            out[r] = {"clean": (arrays[f"score/{r}/mnist/clean"], arrays["correct/clean"]),
                      **{f"PGD eps {e:g}": (arrays[f"score/{r}/mnist/pgd_ce/{e:g}"], arrays[f"correct/pgd_ce/{e:g}"])
                         for e in suite.eps}}
    return out


def identity(info: dict) -> dict:
    """A model's identity as summary.json records it (the leaderboard matches rows by it)."""
    return {"weights": info.get("weights"), "threshold": info.get("threshold"), "params": info.get("params"),
            "defence": {k: info.get("defence", {}).get(k) for k in ("name", "origin", "params", "weights")}}


def load_workspace(suite: OODSuite, data_root, cache_dir, download: bool, log: Log,
                   dev: torch.device) -> tuple[OODWorkspace, dict]:
    """The run's images (`load_sets`, `validation_sets`) and every model trained or loaded as
    `attractor-bench run` prepares it, in one OOD workspace; and what each model's record says about it."""
    splits = data_mod.mnist_train_val(data_root, download)
    sets = load_sets(suite, data_root, download)
    val_sets = validation_sets(suite, splits[1], data_root, download)
    prepared, infos, identities = {}, {}, {}
    for s in suite.suites:
        ws, meta = prepare(s, splits, (sets, {}, {}), cache_dir, log, dev)
        for spec in s.models:
            prepared[spec.name], infos[spec.name] = ws.prepared[spec.name], meta[spec.name]
            identities[spec.name] = model_identity(ws.prepared[spec.name], spec, meta[spec.name])
    calibration = splits[1].x[:N_VALIDATION]
    return OODWorkspace(suite, {"test": sets, "validation": val_sets}, calibration, prepared, identities), infos


def _compute_elsewhere(ws: OODWorkspace, grid: dict, store: CellStore, log: Log, workers: int) -> None:
    """Say how many cells are stored; with `workers` > 1, compute the missing ones in worker processes."""
    cells = [c for cs in grid.values() for c in cs]
    todo = [c for c in cells if not store.path(c.key).is_file()]
    log.say(f"{len(cells)} cells: {len(cells) - len(todo)} in the cell store, {len(todo)} to compute.")
    if workers <= 1 or not todo:
        return
    task = log.bar.add_task(f"cells on {workers} worker processes", total=len(todo))

    def done(c: OODCell, seconds: float) -> None:
        log.bar.advance(task)
        log.line(f"{c.label}: done in {seconds:.1f} s (worker)")
    computed = parallel.compute(ws, todo, store, workers=workers, on_done=done)
    store.mark_written(computed | {c.shared for c in todo if c.shared is not None and c.key in computed})
    log.bar.remove_task(task)


def _model_record(s_name: str, info: dict, arrays: dict, eps: tuple) -> dict:
    return {"suite": s_name, "preset": info.get("preset"), "identity": identity(info),
            "randomized": info.get("randomized", False), "components": info["components"],
            "clean_accuracy": float(arrays["correct/clean"].mean()),
            **{f"pgd_accuracy_{e:g}": float(arrays[f"correct/pgd_ce/{e:g}"].mean()) for e in eps}}


def _old_cache_notice(folder: Path, log: Log) -> None:
    """Say once per run that an older version's OOD cache (`<cache>/ood`, before OOD cells were in the one cell
    store) is no longer read, and how much deleting it frees; it is the user's folder: not deleted here."""
    if folder.is_dir():
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        log.say(f"{folder} holds an older version's OOD results, which this version no longer reads (OOD cells are "
                f"in {folder.parent / 'cells'}); delete it to free {size / 2**20:.1f} MiB.")


def run_ood(suite: OODSuite, data_root=None, cache_dir=None, download: bool = True, console: Console | None = None,
            progress: bool = True, device: str | None = None, workers: int = 1) -> OODResult:
    """Every cell of the OOD suite (`cells.plan`), read from the cell store or computed (in `workers`
    processes when more than one), then per model its rows, its best rejector's validation AUROCs, its
    curves and its record."""
    dev = resolve_device(device)
    log = Log(console or Console(stderr=True), progress)
    t0 = time.perf_counter()
    store = CellStore(resolve_cache_dir(cache_dir) / "cells")
    store.remove_stale_temporaries()
    _old_cache_notice(store.root.parent / "ood", log)
    table, models, all_curves, seconds, chosen_on, n_stored = [], {}, {}, {}, {}, 0
    log.say(f"{suite.name}: {len(suite.model_names)} models ({', '.join(suite.model_names)}), "
            f"MNIST against {', '.join(suite.ood)}, score attacks {', '.join(suite.attacks)} at eps "
            f"{', '.join(f'{e:g}' for e in suite.eps)}.")
    with deterministic(), log:
        activate(dev)
        ws, infos = load_workspace(suite, data_root, cache_dir, download, log, dev)
        grid = plan(ws)
        _compute_elsewhere(ws, grid, store, log, workers)
        for s in suite.suites:
            for spec_m in s.models:
                name, start = spec_m.name, time.perf_counter()
                task = log.bar.add_task(name, total=len(grid[name]))
                arrays, stored = model_arrays(ws, grid[name], store, log, task)
                log.line(f"{name}: done ({stored} of {len(grid[name])} cells from the store)")
                seconds[name], n_stored = round(time.perf_counter() - start, 1), n_stored + stored
                table += rows(name, arrays, suite)
                chosen_on[name] = selection(arrays, suite)
                all_curves[name] = curves(arrays, suite)
                models[name] = _model_record(s.name, infos[name], arrays, suite.eps)
    n_cells, (sets, val_sets) = sum(len(cs) for cs in grid.values()), ws.sets.values()
    used = [c for m in models.values() for c in m["components"]]
    meta = {"components": components.versions(*components.OOD_WIDE, *used), "environment": environment(dev.type),
            "models": models, "model_seconds": seconds, "n_images": {k: len(v) for k, v in sets.items()},
            "ood": list(suite.ood), "eps": list(suite.eps), "attacks": list(suite.attacks), "k_plus_one": suite.k_plus_one, "budgets": budgets(suite.budgets),
            "seed": suite.seed, "device": str(dev), "wall_seconds": round(time.perf_counter() - t0, 1),
            "cells": {"total": n_cells, "from_store": n_stored, "computed": n_cells - n_stored,
                      "failed_verification": store.rejected},
            "validation": {"n_images": {k: len(v) for k, v in val_sets.items()}, "eps": suite.eps[0],
                           "robust_auroc": chosen_on}}
    return OODResult(suite, pd.DataFrame(table, columns=COLUMNS), meta, all_curves)

