"""A RobustBench-style leaderboard over the runs in a results folder: records in, a ranked board out.

`build(dir)` takes the runs under `dir` that the current code made (`records.py` reads their
`summary.json` and the OOD runs' `ood.json`; the others are stale: listed, not ranked), groups the models by
identity (name, weights, defence, threshold), takes each number from one run (`_pick`) and ranks
with paired evidence (`beats`). It renders nothing: `columns.py` defines what the table shows,
`goals.py` what the models are measured against, and `page.py` writes the files
(`page.write_leaderboard`). Nothing depends on the time it runs: the same records give the same board.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import binomtest, fisher_exact

from . import records, tables
from .data import DISPLAY_NAMES
from .summary import decode_samples, interval

EPS_POINTS, OOD_EPS, NORM = (0.1, 0.3), 0.1, "linf"
OOD_SETS = [d for d in DISPLAY_NAMES if d != "mnist"]  # the classification runs' OOD sets (summary.json)
ROBUST_SETS = ("fashion_mnist", "cifar10_bw", "uniform_noise", "smooth_noise")  # the OOD runs' (ood.json)
UNRELIABLE = "⚠ potentially unreliable"
ALPHA = 0.05  # the ranking's significance level (`separated`)


@dataclass
class Number:
    value: float | None
    run: dict | None = None  # the summary it comes from
    rank: tuple = ()  # (attacks, n): what the pick compares before date and suite
    extra: dict | None = None
    record: dict | None = None  # the worst-case record it comes from

    def as_json(self) -> dict:
        """The number, its 95% interval as ci_low / ci_high (where it has one), and where it comes from."""
        extra = dict(self.extra or {})
        lo, hi = extra.pop("interval", None) or (None, None)
        return {"value": None} if self.run is None else {"value": self.value, "ci_low": lo, "ci_high": hi,
                                                         "suite": self.run["suite"], "commit": self.run["commit"],
                                                         "date": self.run["date"], **extra}


@dataclass
class Row:
    display: str
    model: dict  # the first run's record (name, identity, randomized)
    suites: list[str]
    numbers: dict[str, Number]
    unreliable: bool | None
    reasons: dict[str, list[str]]  # suite -> the raised indicators, a sentence each
    rank: int = 0  # 1 + the rows that beat it (`beats`)
    tests: dict[str, list[str]] = field(default_factory=dict)  # per ranked number, the tests that compared it (`rank_tests`)
    unreliable_at: list[str] = field(default_factory=list)  # "<norm> <eps>" where a run's verdict is potentially unreliable

    def v(self, key: str) -> float | None:
        return self.numbers[key].value

    def verdict(self) -> str:
        if self.unreliable is None:
            return "not checked"
        if not self.unreliable:
            return "reliable"
        return f"{UNRELIABLE}" + (f" ({', '.join(self.unreliable_at)})" if self.unreliable_at else "")


@dataclass
class Leaderboard:
    rows: list[Row]
    runs: list[dict]
    pending: list[str]  # folders with results.csv but no summary.json
    stale: list[dict]  # summaries made by other code than the current one (or an older format)
    superseded: list[dict] = field(default_factory=list)  # models of current runs that a newer run's model of that name replaces
    ood_runs: list[dict] = field(default_factory=list)  # the OOD runs (ood.json) of the current code
    ood_unmatched: list[dict] = field(default_factory=list)  # their models that are not a leaderboard row's model
    protocol: str | None = None  # the protocol rows must have been evaluated under (None: every current run ranks)
    custom: list[dict] = field(default_factory=list)  # models of current runs evaluated otherwise: listed, not ranked


def _ood_numbers(row: "Row", docs: list[dict]) -> dict[str, Number]:
    """The row's OOD numbers from the newest OOD run that evaluated the same model."""
    name, ident = row.model["name"], row.model["identity"]
    cands = sorted((d for d in docs if d["models"].get(name, {}).get("identity") == ident),
                   key=lambda d: (d.get("date") or "", d["suite"]), reverse=True)
    if not cands:
        return {}
    doc = cands[0]
    rejector = doc["best_rejector"][name]
    per_set = doc["auroc"]["models"][name][rejector]
    extra = {"rejector": rejector, "eps": doc["auroc"]["eps"], "attacks": doc["auroc"]["attacks"]}
    nums = {"ood_rejector": Number(None, doc, (), extra)}
    for ds in ROBUST_SETS:
        if ds in per_set:
            v = per_set[ds]
            nums[f"ood_{ds}_clean"] = Number(v["clean"], doc, (), {"rejector": rejector, "threshold": v["threshold"]})
            n = {"n_id": doc.get("n_images", {}).get("mnist"), "n_ood": doc.get("n_images", {}).get(ds)}
            nums[f"ood_{ds}_robust"] = Number(v["robust"], doc, (), {**extra, **n, "id_attacked": v["id"],
                                                                     "ood_attacked": v["ood"]})
    return nums


def _pick(cands: list[Number]) -> Number:
    """Most attacks, then the larger n, then the later date, then the alphabetically first suite."""
    cands = sorted(cands, key=lambda c: c.run["suite"])
    cands.sort(key=lambda c: (*c.rank, c.run["date"] or ""), reverse=True)  # stable: ties keep the suite order
    return cands[0] if cands else Number(None)


def _at(x: float, eps: float) -> bool:
    return abs(x - eps) <= 1e-6


def _numbers(entries: list[tuple[dict, dict]]) -> dict[str, Number]:
    """Each number of one model from its (summary, record) pairs."""
    nums = {"clean": _pick([Number(m["clean"]["accuracy"], r, (0, m["clean"]["n"]),
                                   {"n": m["clean"]["n"], "interval": m["clean"].get("interval")}, m["clean"])
                            for r, m in entries if m["clean"]["accuracy"] is not None])}
    for eps in EPS_POINTS:
        wc = _pick([Number(w["accuracy"], r, (len(w["attacks"]), w["n"]), {k: w[k] for k in ("n", "interval", "attacks")}, w)
                    for r, m in entries for w in m["worst_case"] if w["norm"] == NORM and _at(w["eps"], eps)])
        e2e = (wc.record or {}).get("end_to_end_accuracy")  # the same run and images as the worst case
        nums[f"worst_case_{eps:g}"] = wc
        nums[f"e2e_{eps:g}"] = (Number(None) if e2e is None
                                else Number(e2e, wc.run, (), {"n": wc.extra["n"], "interval": interval(e2e, wc.extra["n"]),
                                                              "attacks": wc.extra["attacks"]}))
    for ds in OOD_SETS:
        sets = [(r, o) for r, m in entries for o in m["ood"] if o["dataset"] == ds]
        nums[f"{ds}_clean"] = _pick([Number(o["auroc_clean"], r, (0,)) for r, o in sets if o["auroc_clean"] is not None])
        nums[f"{ds}_attacked"] = _pick([Number(a["auroc"], r, (len(a["attacks"]),), {k: a[k] for k in ("attack", "attacks")})
                                        for r, o in sets for a in o["attacked"]
                                        if a["norm"] == NORM and _at(a["eps"], OOD_EPS) and a["auroc"] is not None])
    return nums


def _sort_key(row: Row) -> tuple:
    vals = [row.v(k) for k in (f"worst_case_{EPS_POINTS[1]:g}", f"worst_case_{EPS_POINTS[0]:g}", "clean")]
    return (*[(1, 0.0) if v is None else (0, -v) for v in vals], row.display)


def _counts(n: Number) -> tuple[int, int]:
    return int(round(n.value * n.extra["n"])), int(n.extra["n"])


MCNEMAR, FISHER = "McNemar", "Fisher"  # the tests `compare` uses, by the names LEADERBOARD.json gives


def compare(a: Number, b: Number) -> tuple[int, str | None]:
    """(+1 if `a` is better than `b` at p < ALPHA, -1 if worse, 0 if not separated; the test used).
    Not both measured: a measured number counts as better than a missing one, and no test. Paired
    where both carry per-image outcomes (`samples`: a worst case's robust images, the clean images
    classified correctly) on shared images: McNemar's exact test, a binomial test on the images
    exactly one of the two keeps, on the images both saw; else Fisher's exact test on the counts."""
    if a.value is None or b.value is None:
        return (a.value is not None) - (b.value is not None), None
    sa, sb = (a.record or {}).get("samples"), (b.record or {}).get("samples")
    if sa and sb:
        (ia, ra), (ib, rb) = decode_samples(sa), decode_samples(sb)
        common = np.intersect1d(ia, ib)
        if len(common):
            ka, kb = ra[np.searchsorted(ia, common)], rb[np.searchsorted(ib, common)]
            only_a, only_b = int((ka & ~kb).sum()), int((kb & ~ka).sum())
            if only_a + only_b == 0 or binomtest(only_a, only_a + only_b, 0.5).pvalue >= ALPHA:
                return 0, MCNEMAR
            return (1 if only_a > only_b else -1), MCNEMAR
    (xa, na), (xb, nb) = _counts(a), _counts(b)
    if fisher_exact([[xa, na - xa], [xb, nb - xb]]).pvalue >= ALPHA:
        return 0, FISHER
    return (1 if xa / na > xb / nb else -1), FISHER


def separated(a: Number, b: Number) -> int:
    """+1 if `a` is better than `b` at p < ALPHA, -1 if worse, 0 if not separated (`compare`)."""
    return compare(a, b)[0]


RANKED = (f"worst_case_{EPS_POINTS[1]:g}", f"worst_case_{EPS_POINTS[0]:g}", "clean")  # in the order `beats` reads them


def beats(r: Row, other: Row) -> bool:
    """Whether `r` is better than `other` at the first of worst case 0.3, worst case 0.1 and clean
    accuracy that separates them."""
    for k in RANKED:
        sign = separated(r.numbers[k], other.numbers[k])
        if sign:
            return sign > 0
    return False


def rank(rows: list[Row]) -> list[Row]:
    """Each row's # (1 + the rows that beat it: `beats`) and its tests, set in place; `rows` returned in rank order
    (the leaderboard's; `attractor-bench benchmark` ranks a new row beside the committed ones with it)."""
    for r in rows:
        r.rank = 1 + sum(beats(o, r) for o in rows if o is not r)
        r.tests = rank_tests(r, rows)
    return sorted(rows, key=lambda r: (r.rank, _sort_key(r)))


def rank_tests(r: Row, rows: list[Row]) -> dict[str, list[str]]:
    """Per ranked number, the tests (`compare`) that compared `r`'s with the other rows' (LEADERBOARD.json)."""
    return {k: sorted({t for o in rows if o is not r for t in [compare(r.numbers[k], o.numbers[k])[1]] if t})
            for k in RANKED}


def _verdict_runs(entries: list[tuple[dict, dict]], numbers: dict[str, Number]) -> list[tuple[dict, dict]]:
    """The (run, model) entries whose verdict the row shows: those of the runs that give its worst
    cases (a verdict concerns the attacks of its own run), all of them if none does."""
    sources = {id(n.run) for k, n in numbers.items() if k.startswith(("worst_case", "e2e")) and n.run is not None}
    return [(r, m) for r, m in entries if id(r) in sources] or entries


def _custom(runs: list[dict], label: str | None) -> tuple[list[dict], list[dict]]:
    """(the runs with only the models evaluated under protocol `label`, the others as custom evaluations)."""
    if label is None:
        return runs, []
    kept, custom = [], []
    for run in runs:
        kept.append({**run, "models": [m for m in run["models"] if m.get("protocol") == label]})
        custom += [{"model": m["name"], "suite": run["suite"], "date": run.get("date"), "commit": run.get("commit"),
                    "clean": m["clean"]["accuracy"], "n": m["clean"]["n"]}
                   for m in run["models"] if m.get("protocol") != label]
    return kept, custom


def build(results_dir: str | Path, protocol: str | None = None) -> Leaderboard:
    """The ranked board of the runs under `results_dir` (`records.py` reads them); with `protocol` (a
    label such as `mnist-linf v1`) only the models evaluated under it rank, the others are custom evaluations."""
    runs, stale, pending = records.current_runs(Path(results_dir))
    ranked, custom = _custom(runs, protocol)
    groups: dict[str, list[tuple[dict, dict]]] = {}
    for run in ranked:
        for m in run["models"]:
            groups.setdefault(json.dumps([m["name"], m["identity"]], sort_keys=True), []).append((run, m))
    groups, superseded = _newest_per_name(groups)
    rows = []
    for entries in groups.values():
        name, suites = entries[0][1]["name"], sorted({r["suite"] for r, _ in entries})
        numbers = _numbers(entries)
        judged = _verdict_runs(entries, numbers)
        checked = [v for _, m in judged for v in [m["verdict"]["potentially_unreliable"]] if v is not None]
        reasons = {r["suite"]: m["verdict"]["reasons"] for r, m in judged if m["verdict"]["potentially_unreliable"]}
        at = sorted({(e["norm"], e["eps"]) for _, m in judged for e in m["verdict"].get("by_eps", [])
                     if e["potentially_unreliable"]})
        rows.append(Row(name, entries[0][1], suites, numbers, any(checked) if checked else None, reasons,
                        unreliable_at=[f"{'L-inf' if n == 'linf' else 'L2'} {tables.fmt_eps(e, n)}" for n, e in at]))
    rank(rows)
    ood_runs, ood_stale = records.read_ood(Path(results_dir))
    for r in rows:
        r.numbers.update({k: Number(None) for k in ("ood_rejector", *[f"ood_{d}_{w}" for d in ROBUST_SETS
                                                                      for w in ("clean", "robust")])})
        r.numbers.update(_ood_numbers(r, ood_runs))
        r.numbers.update(_table_numbers(r))
    matched = {(r.model["name"], json.dumps(r.model["identity"], sort_keys=True)) for r in rows}
    unmatched = [{"model": m, "suite": d["suite"], "date": d.get("date")} for d in ood_runs for m, info in d["models"].items()
                 if (m, json.dumps(info["identity"], sort_keys=True)) not in matched]
    stale += ood_stale
    return Leaderboard(sorted(rows, key=lambda r: (r.rank, _sort_key(r))), runs, pending, stale, superseded, ood_runs,
                       unmatched, protocol, custom)


def _table_numbers(r: Row) -> dict[str, Number]:
    """Two numbers the table shows that the picks above do not: clean accuracy in the run and on the
    images of the row's worst case (so the table's clean, worst case and e2e share their n), and the
    lowest robust OOD AUROC over the OOD run's sets (of the model's best rejector)."""
    wc = r.numbers[f"worst_case_{EPS_POINTS[1]:g}"]
    wc = wc if wc.run is not None else r.numbers[f"worst_case_{EPS_POINTS[0]:g}"]
    m = next((m for m in (wc.run or {}).get("models", []) if m["name"] == r.model["name"]), None)
    clean = (Number(None) if m is None or m["clean"]["accuracy"] is None
             else Number(m["clean"]["accuracy"], wc.run, (), {"n": m["clean"]["n"], "interval": m["clean"].get("interval")}))
    sets = [(r.v(f"ood_{d}_robust"), d) for d in ROBUST_SETS if r.v(f"ood_{d}_robust") is not None]
    low = min(sets, default=None)
    ood = Number(None) if low is None else Number(low[0], r.numbers[f"ood_{low[1]}_robust"].run, (),
                                                  {**r.numbers[f"ood_{low[1]}_robust"].extra, "set": low[1]})
    return {"clean_on_worst_case_images": clean, "ood_robust_lowest": ood}


def _newest_per_name(groups: dict[str, list[tuple[dict, dict]]]) -> tuple[dict, list[dict]]:
    """One model per name: where runs of the current code hold different models under one name
    (other weights, defence or threshold: another training), the one of the newest run stays and
    the others are returned as superseded (listed, not ranked)."""
    by_name: dict[str, list[str]] = {}
    for k, entries in groups.items():
        by_name.setdefault(entries[0][1]["name"], []).append(k)
    newest = lambda k: (max(r["date"] or "" for r, _ in groups[k]), k)
    kept, superseded = {}, []
    for name, keys in by_name.items():
        keys = sorted(keys, key=newest, reverse=True)
        kept[keys[0]] = groups[keys[0]]
        winner = sorted({r["suite"] for r, _ in groups[keys[0]]})
        for k in keys[1:]:
            superseded.append({"model": name, "suites": sorted({r["suite"] for r, _ in groups[k]}),
                               "date": max(r["date"] or "" for r, _ in groups[k]),
                               "why": f"another `{name}` (other weights, defence or threshold) is in the newer "
                                      f"run{'s' if len(winner) > 1 else ''} {', '.join(f'`{w}`' for w in winner)}"})
    return kept, superseded
