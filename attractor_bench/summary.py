"""A run's results as data: `summary.json`, one record per model, what the leaderboard reads.

`summarize(result)` reads the run's robust-flags record (`flags.py`: the clean images and the worst
case per (norm, eps), image by image, computed once by `robustness.worst_case`), its tidy table (rows
selected by their `kind`: `cell`, `sanity`) and its metadata; `from_folder(folder)` reads the same
from a run's files (results.csv, run.json, robust_flags.json), and a run writes its summary.json
that way (`rebuild`; `attractor-bench report FOLDER` does it again): the same files give the same
bytes, floats rounded to 6 decimals and NaN as null, keys sorted.

- `clean`: accuracy on the clean MNIST test images, end-to-end accuracy (accepted by the
  rejector and correct; null without a rejector) and n, the number of those images, and which of
  them the model classifies correctly (`samples`, encoded as the worst case's below, `robust`
  meaning correct), for paired tests of clean accuracy.
- `worst_case`: one entry per MNIST worst case (per norm and eps, and the `all_images` repeat
  over the attacks that saw every image, see `robustness.py`), with a 95% Clopper-Pearson interval
  for the accuracy over its n images and the labels of the attacks it is taken over; the main
  entries also carry their per-sample outcomes (`samples`: `first`, the run's MNIST test images are
  the first `first` of the test set; `images`, which of them the row covers, and `robust`, which
  of those are robust, each as the hex of numpy.packbits), for paired tests between models.
- `ood`: per OOD set, the rejector's AUROC on clean images and, per (norm, eps), the lowest AUROC
  over the attacks that ran on that set there (`attack` gives it, `attacks` lists those compared).
- `verdict`: per (norm, eps) of the worst case (`by_eps`), potentially unreliable or not with the
  raised attack-failure indicators behind it (`indicators.py`: name, attack, count of n, first
  images, why); for the model, whether any (norm, eps) is (null: not checked), the raised
  indicators in a sentence each (`reasons`) and the sanity flags (0/1).
- `components`: the versions of the components the run used (`attractor_bench.components`), and
  `attack_names`, each attack label's registry name: the leaderboard marks a number stale only where
  a component it depends on has a newer version now. `environment`: what the run ran on (shown, not
  keyed). Summaries made before component versions carry a code fingerprint (`code`) instead
  (`provenance.recorded`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from . import flags
from .errors import AttractorBenchError
from .files import write_text
from .flags import ModelFlags, RobustFlags, decode_samples, encode_samples  # noqa: F401 (decode_samples: the leaderboard's)

FORMAT = 3
FILE = "summary.json"


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _same_eps(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-5, abs_tol=1e-9)  # results.csv keeps 6 digits


def _metrics(rows: pd.DataFrame) -> dict[str, float | None]:
    return {str(m): _num(float(v)) for m, v in zip(rows.metric, rows.value)}


def interval(accuracy: float, n: int) -> list[float]:
    """95% Clopper-Pearson (exact) interval for `accuracy` measured on `n` images."""
    ci = binomtest(int(round(accuracy * n)), int(n)).proportion_ci(confidence_level=0.95, method="exact")
    return [float(ci.low), float(ci.high)]


def _worst_case(wc: ModelFlags, rejects: bool, first: int) -> list[dict]:
    """The worst-case entries of one model, read from its robust-flags record."""
    out = []
    for f in wc.points:
        acc, n = f.robust.mean(), len(f.idx)
        out.append({"norm": f.norm, "eps": float(f.eps), "accuracy": acc, "interval": interval(acc, n), "n": n,
                    "end_to_end_accuracy": f.safe.mean() if rejects else None, "attacks": list(f.attacks),
                    "all_images": f.all_images, "samples": None if f.all_images else encode_samples(first, f.idx, f.robust)})
    return sorted(out, key=lambda w: (w["norm"], w["eps"], w["all_images"]))


def _ood(cells: pd.DataFrame, meta: dict) -> list[dict]:
    out = []
    for ds in dict.fromkeys(cells.dataset):
        if ds == "mnist":
            continue
        on = cells[(cells.dataset == ds) & (cells.metric == "ood_AUROC")]
        clean = on[on.attack == "none"]
        groups: dict[tuple[str, float], list[tuple[float | None, str]]] = {}
        for label, eps, v in zip(on.attack, on.eps, on.value):
            if label != "none":
                a = meta["attacks"][label]
                eps = next((float(e) for e in a["eps"] if _same_eps(e, eps)), float(eps))  # exact, not results.csv's 6 digits
                groups.setdefault((a["norm"], eps), []).append((_num(v), str(label)))
        attacked = []
        for (norm, eps), cands in sorted(groups.items()):
            measured = sorted((v, lab) for v, lab in cands if v is not None)
            attacked.append({"norm": norm, "eps": eps, "auroc": measured[0][0] if measured else None,
                             "attack": measured[0][1] if measured else None, "attacks": sorted(lab for _, lab in cands)})
        out.append({"dataset": str(ds), "auroc_clean": _num(float(clean.value.iloc[0])) if len(clean) else None,
                    "attacked": attacked})
    return out


def _clean(c: RobustFlags, rejects: bool, first: int) -> dict:
    """The clean images: accuracy, end to end, n (the run's MNIST test images) and which are correct."""
    acc = c.robust.mean()
    return {"accuracy": acc, "n": len(c.idx), "interval": interval(acc, len(c.idx)),
            "end_to_end_accuracy": c.safe.mean() if rejects else None, "samples": encode_samples(first, c.idx, c.robust)}


def _model(name: str, t: pd.DataFrame, meta: dict, wc: ModelFlags) -> dict:
    info = meta["models"][name]
    rejects = info.get("threshold") is not None
    cells, sanity = t[t.kind == "cell"], _metrics(t[t.kind == "sanity"])
    flags_ = {k: int(v) for k, v in sanity.items() if k.startswith("flag_")}
    unreliable = sanity.get("potentially_unreliable")
    first = int(meta["n_images"]["mnist"])
    return {
        "name": name, "preset": info.get("preset"), "randomized": bool(info.get("randomized", False)), "has_rejector": rejects,
        "identity": {"weights": info.get("weights"), "threshold": info.get("threshold"), "params": info.get("params"),
                     "defence": {k: info.get("defence", {}).get(k) for k in ("name", "origin", "params", "weights")}},
        "clean": _clean(wc.clean, rejects, first),
        "worst_case": _worst_case(wc, rejects, first),
        "ood": _ood(cells, meta),
        "verdict": _verdict(meta.get("verdict", {}).get(name), unreliable, flags_, meta.get("flags", {}).get(name, [])),
    }


def reason(f: dict) -> str:
    """One raised indicator in a sentence: where, what, how many, which images."""
    where = "every eps" if f["eps"] is None else f"{f['norm']} eps {f['eps']:g}"
    shown = f"; first images {', '.join(map(str, f['samples']))}" if f["samples"] else ""
    return f"{f['name']} ({f['attack']}, {where}): {f['why']}{shown}"


def _verdict(v: dict | None, unreliable, flags: dict, why: list[str]) -> dict:
    """The verdict per (norm, eps) from the indicators (`indicators.verdict`), and for the model:
    potentially unreliable if it is at any (norm, eps). Without indicators (a run of older code),
    the sanity flags alone."""
    if v is None:
        return {"potentially_unreliable": None if unreliable is None else bool(unreliable), "flags": flags,
                "reasons": list(why), "by_eps": []}
    by_eps = [{"norm": e["norm"], "eps": float(e["eps"]), "potentially_unreliable": bool(e["potentially_unreliable"]),
               "robust_images": e["robust_images"], "note": e["note"],
               "indicators": [{k: f[k] for k in ("name", "attack", "count", "n", "samples", "why", "value")}
                              for f in e["indicators"]]} for e in v["by_eps"]]
    reasons = list(dict.fromkeys(reason(f) for e in v["by_eps"] for f in e["indicators"]))
    return {"potentially_unreliable": any(e["potentially_unreliable"] for e in by_eps), "flags": flags,
            "reasons": reasons, "by_eps": by_eps}


def summarize(result) -> dict:
    """The summary of a `RunResult` (its suite's name, table, metadata and robust flags)."""
    return _summarize(result.suite.name, result.table, result.meta, result.robust_flags)


def _summarize(suite: str, t: pd.DataFrame, meta: dict, records: dict[str, ModelFlags]) -> dict:
    if "kind" not in t.columns:
        raise AttractorBenchError("the results table has no `kind` column (cell / worst_case / sanity); it was made by an "
                                  "older version: rerun the suite")
    models = [str(m) for m in dict.fromkeys(t.model)]
    missing = [m for m in models if m not in records]
    if missing:
        raise AttractorBenchError(f"no robust flags ({flags.FILE}) for {', '.join(missing)}: the run was made by an older "
                                  "version: rerun the suite")
    return {"format": FORMAT, "suite": suite, "command": meta.get("command"), "commit": meta.get("commit"),
            "date": meta.get("date"), "components": meta.get("components"), "environment": meta.get("environment"),
            "attack_names": {label: a["name"] for label, a in meta.get("attacks", {}).items()},
            "worst_case_mode": meta.get("worst_case", "full"),
            "models": [_model(m, t[t.model == m], meta, records[m]) for m in models]}


def read_table(path: Path) -> pd.DataFrame:
    """A run's results.csv as the runner made it: names as text (a model called `1` or `NA` too),
    empty values as NaN."""
    text = {c: str for c in ("model", "attack", "dataset", "metric", "kind")}
    return pd.read_csv(path, dtype={**text, "eps": float, "value": float}, keep_default_na=False, na_values={"value": [""]})


def from_folder(folder: str | Path) -> dict:
    """The summary of a run from its folder's files alone: results.csv, run.json and robust_flags.json
    (a run writes its summary.json this way, so the two agree byte for byte)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        table, records = read_table(folder / "results.csv"), flags.read(folder)
    except (OSError, ValueError, KeyError) as e:
        raise AttractorBenchError(f"{folder} does not hold a run's results.csv, run.json and {flags.FILE} ({e}); a run "
                                  f"written before {flags.FILE} existed cannot be summarized again: rerun its suite.") from e
    return _summarize(meta.get("suite", folder.name), table, meta, records)


def _tidy(v):
    """JSON-ready: floats rounded to 6 decimals, NaN and infinities as None, numpy scalars as Python ones."""
    if isinstance(v, dict):
        return {str(k): _tidy(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_tidy(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return round(float(v), 6) if math.isfinite(v) else None
    return v


def dumps(doc: dict) -> str:
    return json.dumps(_tidy(doc), sort_keys=True, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def write_summary(result, folder: str | Path) -> Path:
    """Write `folder/summary.json` of a `RunResult` atomically; return its path."""
    return write_text(Path(folder) / FILE, dumps(summarize(result)))


def rebuild(folder: str | Path) -> Path:
    """Write `folder/summary.json` from the run's files in `folder` (`from_folder`); return its path."""
    return write_text(Path(folder) / FILE, dumps(from_folder(folder)))
