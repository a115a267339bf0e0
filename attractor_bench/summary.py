"""A run's results as data: `summary.json`, one record per model, what the leaderboard reads.

`summarize(result)` takes the tidy table (rows selected by their `kind`: `cell`, `worst_case`,
`sanity`) and the run's metadata; `write_summary(result, folder)` writes it atomically, floats
rounded to 6 decimals and NaN as null, keys sorted, so the same results give the same bytes.

- `clean`: accuracy on the clean MNIST test images, end-to-end accuracy (accepted by the
  rejector and correct; null without a rejector) and n, the number of those images, and which of
  them the model classifies correctly (`samples`, encoded as the worst case's below, `robust`
  meaning correct; null in a run that did not hand them over), for paired tests of clean accuracy.
- `worst_case`: one entry per MNIST worst-case row (per norm and eps, and the `all_images` repeat
  over the attacks that saw every image, see `robustness.py`), with a 95% Clopper-Pearson interval
  for the accuracy over its n images and the labels of the attacks it is taken over; the main
  rows also carry their per-sample outcomes (`samples`: `first`, the run's MNIST test images are
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

from .errors import AttractorBenchError
from .files import write_text

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


def _attack_images(meta: dict, label: str) -> int | None:
    """MNIST images attack `label` saw (None: all of them)."""
    return meta.get("subsets", {}).get(label, {}).get("mnist", meta["attacks"][label].get("n"))


def _worst_case_attacks(meta: dict, model: str, norm: str, eps: float, n: int) -> list[str]:
    """The attacks of `norm` with `eps` that ran on `model` and saw at least the `n` images of the row."""
    return [label for label, a in meta["attacks"].items()
            if a["norm"] == norm and any(_same_eps(e, eps) for e in a["eps"]) and model in (a.get("models") or [model])
            and (_attack_images(meta, label) or n) >= n]


def encode_samples(first: int, idx: np.ndarray, robust: np.ndarray) -> dict:
    """Per-sample outcomes as text: which of the first `first` test images (`images`) and which of
    them are robust (`robust`, in index order), each the hex of numpy.packbits."""
    mask = np.zeros(first, bool)
    mask[idx] = True
    return {"first": int(first), "images": np.packbits(mask).tobytes().hex(),
            "robust": np.packbits(np.asarray(robust, bool)).tobytes().hex()}


def decode_samples(s: dict) -> tuple[np.ndarray, np.ndarray]:
    """(test-set indices, robust per index) of `encode_samples`' output."""
    mask = np.unpackbits(np.frombuffer(bytes.fromhex(s["images"]), np.uint8))[: s["first"]].astype(bool)
    idx = np.flatnonzero(mask)
    return idx, np.unpackbits(np.frombuffer(bytes.fromhex(s["robust"]), np.uint8))[: len(idx)].astype(bool)


def _worst_case(t: pd.DataFrame, meta: dict, model: str, rejects: bool, samples: dict, first: int) -> list[dict]:
    norms = {a["norm"] for a in meta["attacks"].values()}
    labels = {**{f"worst_case_{x}": (x, False) for x in norms}, **{f"worst_case_{x}_all_images": (x, True) for x in norms}}
    out = []
    for (label, eps), rows in t[t.dataset == "mnist"].groupby(["attack", "eps"], sort=True):
        if label not in labels:
            raise AttractorBenchError(f"worst-case row `{label}` of `{model}`: no attack of the run has its norm "
                                      f"({', '.join(sorted(norms))}); a bug")
        norm, all_images = labels[label]
        m = _metrics(rows)
        n, acc = int(m["n_samples"]), m["accuracy"]
        attacks = _worst_case_attacks(meta, model, norm, eps, n)
        if len(attacks) != int(m["n_attacks"]):
            raise AttractorBenchError(f"`{model}` {label} at eps {eps:g}: the table counts {int(m['n_attacks'])} attacks but "
                                      f"the run's metadata gives {len(attacks)} ({', '.join(attacks) or 'none'}); a bug")
        per_sample = next((v for (nm, e), v in samples.items() if nm == norm and _same_eps(e, eps)), None)
        out.append({"norm": norm, "eps": float(eps), "accuracy": acc, "interval": interval(acc, n), "n": n,
                    "end_to_end_accuracy": m.get("end_to_end_accuracy") if rejects else None,
                    "attacks": attacks, "all_images": all_images,
                    "samples": None if all_images or per_sample is None else encode_samples(first, *per_sample)})
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
                groups.setdefault((meta["attacks"][label]["norm"], float(eps)), []).append((_num(v), str(label)))
        attacked = []
        for (norm, eps), cands in sorted(groups.items()):
            measured = sorted((v, lab) for v, lab in cands if v is not None)
            attacked.append({"norm": norm, "eps": eps, "auroc": measured[0][0] if measured else None,
                             "attack": measured[0][1] if measured else None, "attacks": sorted(lab for _, lab in cands)})
        out.append({"dataset": str(ds), "auroc_clean": _num(float(clean.value.iloc[0])) if len(clean) else None,
                    "attacked": attacked})
    return out


def _clean_n(result) -> int:
    """The clean images: the run's MNIST test images (run.json `n_images`)."""
    return int(result.meta["n_images"]["mnist"])


def _clean_samples(result, name: str) -> dict | None:
    """The model's clean correctness per image (`RunResult.samples` under ("none", 0.0)), encoded."""
    per_sample = getattr(result, "samples", {}).get(name, {}).get(("none", 0.0))
    return None if per_sample is None else encode_samples(_clean_n(result), *per_sample)


def _model(name: str, t: pd.DataFrame, result) -> dict:
    meta = result.meta
    info = meta["models"][name]
    rejects = info.get("threshold") is not None
    cells, sanity = t[t.kind == "cell"], _metrics(t[t.kind == "sanity"])
    clean = _metrics(cells[(cells.attack == "none") & (cells.dataset == "mnist")])
    flags = {k: int(v) for k, v in sanity.items() if k.startswith("flag_")}
    unreliable = sanity.get("potentially_unreliable")
    return {
        "name": name, "preset": info.get("preset"), "randomized": bool(info.get("randomized", False)), "has_rejector": rejects,
        "identity": {"weights": info.get("weights"), "threshold": info.get("threshold"), "params": info.get("params"),
                     "defence": {k: info.get("defence", {}).get(k) for k in ("name", "origin", "params", "weights")}},
        "clean": {"accuracy": clean.get("accuracy"), "n": _clean_n(result),
                  "interval": None if clean.get("accuracy") is None else interval(clean["accuracy"], _clean_n(result)),
                  "end_to_end_accuracy": clean.get("end_to_end_accuracy") if rejects else None,
                  "samples": _clean_samples(result, name)},
        "worst_case": _worst_case(t[t.kind == "worst_case"], meta, name, rejects,
                                  getattr(result, "samples", {}).get(name, {}), _clean_n(result)),
        "ood": _ood(cells, meta),
        "verdict": _verdict(meta.get("verdict", {}).get(name), unreliable, flags, meta.get("flags", {}).get(name, [])),
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
    """The summary of a `RunResult` (its suite's name, table and metadata)."""
    t, meta = result.table, result.meta
    if "kind" not in t.columns:
        raise AttractorBenchError("the results table has no `kind` column (cell / worst_case / sanity); it was made by an "
                                  "older version: rerun the suite")
    return {"format": FORMAT, "suite": result.suite.name, "command": meta.get("command"), "commit": meta.get("commit"),
            "date": meta.get("date"), "components": meta.get("components"), "environment": meta.get("environment"),
            "attack_names": {label: a["name"] for label, a in meta.get("attacks", {}).items()},
            "worst_case_mode": meta.get("worst_case", "full"),
            "models": [_model(str(m), t[t.model == m], result) for m in dict.fromkeys(t.model)]}


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
    """Write `folder/summary.json` atomically; return its path."""
    return write_text(Path(folder) / FILE, dumps(summarize(result)))
