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
  attacks at the first eps, after everything above (the test numbers do not depend on them):
  `selection` gives each rejector's robust AUROC on them, on which `report.best_rejectors` chooses
  the model's best rejector, so that no choice is made on the test sets.

Each model's arrays are stored in the cache (`<cache>/ood/<key>.npz`, the key covers the model's
cell fingerprint, this package's code and the suite's images and budgets), so an interrupted run
redoes only the models it had not finished.
"""

from __future__ import annotations

import io
import zlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console

from attractor_bench import data as data_mod
from attractor_bench.attacks import ATTACKS
from attractor_bench.attacks.autoattack_standard import Pipeline
from attractor_bench.attacks.rejection_aware import RejectionAwarePGD
from attractor_bench.cache import resolve_cache_dir
from attractor_bench.cells import Defended, Target
from attractor_bench.determinism import deterministic
from attractor_bench.device import activate, resolve_device
from attractor_bench.errors import ConfigError
from attractor_bench.metrics import KEYS, ood_metrics
from attractor_bench.files import array_fingerprint, atomic_write, key
from attractor_bench import components
from attractor_bench.provenance import environment
from attractor_bench.preparation import prepare
from attractor_bench.progress import Log

from . import synthetic
from .attacks import BUDGETS, k_plus_one, score_attack
from .rejectors import BATCH, rejectors_for
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


def _predict(d: Defended, x: np.ndarray) -> np.ndarray:
    return d.classifiers[Target.PIPELINE].predict(x, batch_size=BATCH).argmax(1)


def _model_arrays(d: Defended, suite: OODSuite, sets: dict, val_x: np.ndarray, log: Log, task,
                  val_sets: dict) -> dict[str, np.ndarray]:
    """Every per-image number of one model: scores clean and attacked, predictions, cross-checks,
    then the validation images' scores (`val/...`)."""
    out: dict[str, np.ndarray] = {}
    mnist = sets["mnist"]
    out["correct/clean"] = _predict(d, mnist.x) == mnist.y
    rejectors = rejectors_for(d, val_x)
    for r in rejectors:
        out[f"threshold/{r.name}"] = np.array([r.threshold])
        for ds, split in sets.items():
            out[f"score/{r.name}/{ds}/clean"] = r.score(split.x)
    for e in suite.eps:
        x_pgd = ATTACKS["pgd"].build(d.classifiers[Target.PIPELINE], eps=e).generate(mnist.x, mnist.y)
        out[f"correct/pgd_ce/{e:g}"] = _predict(d, x_pgd) == mnist.y
        for r in rejectors:
            out[f"score/{r.name}/mnist/pgd_ce/{e:g}"] = r.score(x_pgd)
    for r in rejectors:
        clean_all = np.concatenate([out[f"score/{r.name}/{ds}/clean"] for ds in sets])
        for e in suite.eps:
            out.update(_score_attacks(r, suite, sets, e, clean_all, "score", "", log, task))
    own = d.rejector  # the rejection-aware attack is written for a fixed-point defence's rejector
    if suite.k_plus_one and own is not None and hasattr(getattr(own, "defence", None), "iterate"):
        logits = _Logits(d)
        for e in suite.eps:
            for ds, split in sets.items():
                if ds == "mnist":
                    continue
                log.bar.update(task, description=f"cross-check: rejection-aware and K+1 on {ds} at eps {e:g}")
                log.line(f"cross-check: rejection-aware and K+1 on {ds} at eps {e:g}")
                ra = RejectionAwarePGD(d.classifiers[Target.PIPELINE], own, eps=e).generate(split.x)
                out[f"score/{own.name}/{ds}/rejection_aware/{e:g}"] = own.score(ra)
                x_k1 = k_plus_one(logits, own, split.x, e, suite.budgets.get("k_plus_one"))
                out[f"score/{own.name}/{ds}/k_plus_one/{e:g}"] = own.score(x_k1)
                log.bar.advance(task)
    return {**out, **_validation_arrays(rejectors, suite, val_sets, log, task)}


def _validation_arrays(rejectors: list, suite: OODSuite, val_sets: dict, log: Log, task) -> dict[str, np.ndarray]:
    """Every rejector's scores of the validation images, clean and under each score attack at the
    first eps (`val/score/<rejector>/<set>/...`): what the best rejector is chosen on."""
    out, e = {}, suite.eps[0]
    for r in rejectors:
        for ds, split in val_sets.items():
            out[f"val/score/{r.name}/{ds}/clean"] = r.score(split.x)
        clean_all = np.concatenate([out[f"val/score/{r.name}/{ds}/clean"] for ds in val_sets])
        out.update(_score_attacks(r, suite, val_sets, e, clean_all, "val/score", " (validation)", log, task))
    return out


def _score_attacks(r, suite: OODSuite, sets: dict, e: float, clean_all: np.ndarray, prefix: str, where: str, log: Log,
                   task) -> dict[str, np.ndarray]:
    """Rejector `r`'s scores of every set under each score attack at eps `e` (MNIST attacked to be rejected, the
    OOD sets to be accepted), keyed `<prefix>/<rejector>/<set>/<attack>/<eps>`."""
    out = {}
    for a in suite.attacks:
        for ds, split in sets.items():
            direction = "reject" if ds == "mnist" else "accept"
            log.bar.update(task, description=f"{r.name}: {a} {direction} on {ds}{where} at eps {e:g}")
            log.line(f"score attack {a} ({r.name}, {direction}) on {ds}{where} at eps {e:g}")
            x_adv = score_attack(a, r, split.x, e, direction, clean_all, suite.seed, suite.budgets.get(a))
            out[f"{prefix}/{r.name}/{ds}/{a}/{e:g}"] = r.score(x_adv)
            log.bar.advance(task)
    return out


def selection(arrays: dict, suite: OODSuite) -> dict[str, float]:
    """Per rejector, the robust AUROC (joint, per image the worst over the score attacks) at the
    first eps, averaged over the OOD sets, on the validation images alone: the best rejector's rule."""
    e, out = suite.eps[0], {}
    for r in (k.split("/")[1] for k in arrays if k.startswith("threshold/")):
        v = lambda ds: [arrays[f"val/score/{r}/{ds}/{a}/{e:g}"] for a in suite.attacks]
        id_worst = np.max(v("mnist"), axis=0)
        out[r] = float(np.mean([ood_metrics(id_worst, np.min(v(ds), axis=0))["AUROC"] for ds in suite.ood]))
    return out


class _Logits(torch.nn.Module):
    """The defended pipeline's logits as a module (the classifier half of the K+1 model)."""

    def __init__(self, d: Defended):
        super().__init__()
        self.pipeline = Pipeline(d.classifiers[Target.PIPELINE])

    def forward(self, x):
        return self.pipeline(x)


def _jobs(d: Defended, suite: OODSuite, n_sets: int) -> int:
    """The attack jobs of one model, for the progress bar's total (the validation images' at one eps)."""
    n_rejectors = 2 + (getattr(d.defence, "dae", None) is not None or d.rejector is not None)
    cross = len(suite.eps) * (n_sets - 1) if suite.k_plus_one and hasattr(getattr(d.rejector, "defence", None), "iterate") else 0
    return n_rejectors * (len(suite.eps) + 1) * len(suite.attacks) * n_sets + cross


def _cached(path: Path, compute) -> tuple[dict[str, np.ndarray], bool]:
    """The arrays stored at `path`, else computed and stored; and whether they came from the cache."""
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}, True
    arrays = compute()

    def write(tmp: Path) -> None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        tmp.write_bytes(buf.getvalue())
    atomic_write(path, write)
    return arrays, False


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


def run_ood(suite: OODSuite, data_root=None, cache_dir=None, download: bool = True, console: Console | None = None,
            progress: bool = True, device: str | None = None) -> OODResult:
    dev = resolve_device(device)
    log = Log(console or Console(stderr=True), progress)
    t0 = time.perf_counter()
    splits = data_mod.mnist_train_val(data_root, download)
    sets = load_sets(suite, data_root, download)
    val_x = splits[1].x[:N_VALIDATION]
    val_sets = validation_sets(suite, splits[1], data_root, download)
    code = key(components=components.versions(*components.OOD_WIDE))
    folder = resolve_cache_dir(cache_dir) / "ood"
    images = array_fingerprint(*(s.x for s in sets.values()), sets["mnist"].y, val_x, *(s.x for s in val_sets.values()))
    spec = {k: getattr(suite, k) for k in ("eps", "attacks", "k_plus_one", "seed", "budgets")}
    table, models, all_curves, seconds, chosen_on = [], {}, {}, {}, {}
    log.say(f"{suite.name}: {len(suite.model_names)} models ({', '.join(suite.model_names)}), "
            f"MNIST against {', '.join(suite.ood)}, score attacks {', '.join(suite.attacks)} at eps "
            f"{', '.join(f'{e:g}' for e in suite.eps)}.")
    with deterministic(), log:
        activate(dev)
        for s in suite.suites:
            ws, meta = prepare(s, splits, (sets, {}, {}), cache_dir, log, dev)
            for spec_m in s.models:
                d = ws.prepared[spec_m.name]
                task = log.bar.add_task(f"{spec_m.name}", total=_jobs(d, suite, len(sets)))
                start = time.perf_counter()
                torch.manual_seed(suite.seed)
                path = folder / f"{key(code=code, model=d.fingerprint, images=images, spec=spec)}.npz"
                arrays, hit = _cached(path, lambda: _model_arrays(d, suite, sets, val_x, log, task, val_sets))
                log.bar.update(task, description=f"{spec_m.name}: done", completed=_jobs(d, suite, len(sets)))
                log.line(f"{spec_m.name}: done ({'from the cache' if hit else 'computed'})")
                seconds[spec_m.name] = round(time.perf_counter() - start, 1)
                table += rows(spec_m.name, arrays, suite)
                chosen_on[spec_m.name] = selection(arrays, suite)
                all_curves[spec_m.name] = curves(arrays, suite)
                info = meta[spec_m.name]
                models[spec_m.name] = {"suite": s.name, "preset": info.get("preset"), "identity": identity(info),
                                       "randomized": info.get("randomized", False), "components": info["components"],
                                       "clean_accuracy": float(arrays["correct/clean"].mean()),
                                       **{f"pgd_accuracy_{e:g}": float(arrays[f"correct/pgd_ce/{e:g}"].mean())
                                          for e in suite.eps}}
    used = [c for s in suite.suites for spec_m in s.models for c in models[spec_m.name]["components"]]
    meta = {"components": components.versions(*components.OOD_WIDE, *used), "environment": environment(dev.type),
            "models": models, "model_seconds": seconds, "n_images": {k: len(v) for k, v in sets.items()},
            "ood": list(suite.ood), "eps": list(suite.eps), "attacks": list(suite.attacks), "k_plus_one": suite.k_plus_one, "budgets": {a: {**b, **suite.budgets.get(a, {})} for a, b in BUDGETS.items()},
            "seed": suite.seed, "device": str(dev), "wall_seconds": round(time.perf_counter() - t0, 1),
            "validation": {"n_images": {k: len(v) for k, v in val_sets.items()}, "eps": suite.eps[0],
                           "robust_auroc": chosen_on}}
    return OODResult(suite, pd.DataFrame(table, columns=COLUMNS), meta, all_curves)
