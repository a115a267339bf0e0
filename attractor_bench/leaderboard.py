"""A RobustBench-style leaderboard over the runs in a results folder, read from their `summary.json`.

`write_leaderboard(dir)` reads `dir/*/summary.json` (see `summary.py`), sets aside the runs made
by other code than the current one (stale: listed, not ranked), groups the models by identity
(name, weights, defence, threshold), takes each number from one run (`RULES`), ranks with paired
evidence (`beats`), and writes LEADERBOARD.md, LEADERBOARD.csv, LEADERBOARD.json and
leaderboard_worst_case.png into `dir`, all or none. Nothing depends on the time it runs: the same
summaries and code give the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import binomtest, fisher_exact

from . import page, plots, tables
from .data import DISPLAY_NAMES
from .errors import AttractorBenchError, ConfigError
from .files import atomic_folder
from .ood.report import DISPLAY_NAMES as OOD_DISPLAY, META as OOD_FILE
from . import components
from .currency import attack_names, current_ood, current_run
from .provenance import CARRIED, read_carried, same_chain
from .published import GOAL, MNIST_LINF_03, SOURCE
from .summary import FILE, FORMAT, decode_samples, dumps, interval

EPS_POINTS, OOD_EPS, NORM = (0.1, 0.3), 0.1, "linf"
OOD_SETS = [d for d in DISPLAY_NAMES if d != "mnist"]  # the classification runs' OOD sets (summary.json)
ROBUST_SETS = ("fashion_mnist", "cifar10_bw", "uniform_noise", "smooth_noise")  # the OOD runs' (ood.json)
FILES, FIGURE = ("LEADERBOARD.md", "LEADERBOARD.csv", "LEADERBOARD.json", "leaderboard.html"), "leaderboard_worst_case.png"
PAGE = FILES[3]  # the page (page.py): the table, sortable, and one card per model
FIGURE_TITLE = "Worst case over each run's L-inf attacks"
UNRELIABLE = "⚠ potentially unreliable"
SHOWN_REASONS = 6  # per model and suite in LEADERBOARD.md (all of them in LEADERBOARD.json and the results README)
ALPHA = 0.05
RULES = (
    "One row per model (name, weights, defence, threshold); a newer training under the same name supersedes the older.",
    "Worst case at L-inf eps: an image counts only if correct clean and under every L-inf attack of the run at that eps; "
    "95% Clopper-Pearson intervals.",
    "e2e: accepted by the rejector and correct in that worst case (models with a rejector only).",
    f"OOD: the model's best rejector in its OOD run, attacked at L-inf {OOD_EPS:g} (ID images down, OOD images up).",
    "Each number from the run with the most attacks, then the larger n, then the later date (LEADERBOARD.json names it).",
    f"#: 1 + the rows better at the first of worst case 0.3, 0.1 and clean separated at p < {ALPHA:g} (McNemar, "
    "else Fisher); equal # = not separated.",
    "Verdict: potentially unreliable where an attack-failure indicator was raised (evidence below); numbers in percent.",
)
# The goals issue 19 sets `attractor_at` (a robust attractor network), measured on every row of that preset.
AT_GOALS = {"preset": "attractor_at", "reference": "pgd_at", "clean": 98.0, "e2e_eps": 0.1, "e2e": 80.0,
            "ood_auroc": 95.0, "ood_sets": ("fashion_mnist", "cifar10_bw")}
_MODEL_KEYS = ("name", "identity", "randomized", "has_rejector", "clean", "worst_case", "ood", "verdict")


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
    unreliable_at: list[str] = field(default_factory=list)  # "<norm> <eps>" where a run's verdict is potentially unreliable

    def v(self, key: str) -> float | None:
        return self.numbers[key].value

    def pct(self, key: str) -> str:
        return tables.pct(self.v(key), tables.DASH)

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


def _read(path: Path, results_dir: Path) -> dict:
    fix = f"rerun its suite (attractor-bench run <suite.yaml> --results-dir {results_dir}) or move {path.parent} away"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise AttractorBenchError(f"{path}: not valid JSON ({e}); {fix}.") from e
    if isinstance(doc, dict) and isinstance(doc.get("format"), int) and doc["format"] < FORMAT and isinstance(doc.get("suite"), str):
        return {**doc, "models": [], "stale": f"summary format {doc['format']} (this version writes {FORMAT})"}
    if isinstance(doc, dict):
        doc["attack_names"] = attack_names(path, doc)
    if not (isinstance(doc, dict) and doc.get("format") == FORMAT and isinstance(doc.get("suite"), str)
            and isinstance(doc.get("models"), list)
            and all(isinstance(m, dict) and all(k in m for k in _MODEL_KEYS) for m in doc["models"])):
        raise AttractorBenchError(f"{path}: not a summary of format {FORMAT} (an object with suite, date, commit and models, "
                                  f"each with {', '.join(_MODEL_KEYS)}); {fix}.")
    return doc


def read_summaries(results_dir: Path) -> tuple[list[dict], list[str]]:
    """The summaries under `results_dir` (by suite) and the folders that have none; raises before anything is written."""
    if not results_dir.is_dir():
        raise ConfigError(f"results folder {results_dir} does not exist; pass --results-dir with the folder "
                          "`attractor-bench run` wrote to (default: results), or run a suite first.")
    folders = sorted(p for p in results_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths = [f / FILE for f in folders if (f / FILE).is_file()]
    pending = [f.name for f in folders if (f / "results.csv").is_file() and not (f / FILE).is_file()]
    if not paths:
        older = f" ({', '.join(pending)} predate it)" if pending else ""
        raise ConfigError(f"no <suite>/{FILE} under {results_dir}{older}: run a suite with this version (attractor-bench "
                          f"run <suite.yaml> --results-dir {results_dir}), which writes it beside results.csv.")
    return sorted((_read(p, results_dir) for p in paths), key=lambda r: r["suite"]), pending


def read_ood(results_dir: Path) -> tuple[list[dict], list[dict]]:
    """(current, stale): the OOD runs' ood.json under `results_dir`, split by their code fingerprint."""
    docs = []
    for path in sorted(results_dir.glob(f"*/{OOD_FILE}")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise AttractorBenchError(f"{path}: not valid JSON ({e}); rerun its OOD suite (attractor-bench ood <suite.yaml>) "
                                      f"or move {path.parent} away.") from e
        if not (isinstance(doc, dict) and doc.get("kind") == "ood" and isinstance(doc.get("models"), dict)
                and isinstance(doc.get("auroc"), dict) and isinstance(doc.get("best_rejector"), dict)):
            raise AttractorBenchError(f"{path}: not an OOD run's ood.json (kind 'ood' with models, auroc and best_rejector); "
                                      f"rerun its OOD suite or move {path.parent} away.")
        docs.append(doc)
    carried, now, current, stale = read_carried(results_dir), components.current(), [], []
    for d in docs:
        kept, notes = current_ood(d, carried, now)
        if kept is None:
            stale.append({**d, "stale": "; ".join(notes)})
            continue
        kept["lineage"] = None if "components" in d else same_chain(d.get("code"), carried["checks"], "ood")
        current.append(kept)
        stale += [{**d, "stale": "; ".join(notes)}] if notes else []
    return current, stale


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
                                   {"n": m["clean"]["n"], "interval": m["clean"].get("interval")})
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


def separated(a: Number, b: Number) -> int:
    """+1 if `a` is better than `b` at p < ALPHA, -1 if worse, 0 if not separated (or not both
    measured; a measured number counts as better than a missing one). Paired (McNemar's exact test:
    a binomial test on the images exactly one of the two keeps) where both carry per-sample outcomes
    on shared images, else Fisher's exact test."""
    if a.value is None or b.value is None:
        return (a.value is not None) - (b.value is not None)
    sa, sb = (a.record or {}).get("samples"), (b.record or {}).get("samples")
    if sa and sb:
        (ia, ra), (ib, rb) = decode_samples(sa), decode_samples(sb)
        common = np.intersect1d(ia, ib)
        if len(common):
            ka, kb = ra[np.searchsorted(ia, common)], rb[np.searchsorted(ib, common)]
            only_a, only_b = int((ka & ~kb).sum()), int((kb & ~ka).sum())
            if only_a + only_b == 0 or binomtest(only_a, only_a + only_b, 0.5).pvalue >= ALPHA:
                return 0
            return 1 if only_a > only_b else -1
    (xa, na), (xb, nb) = _counts(a), _counts(b)
    if fisher_exact([[xa, na - xa], [xb, nb - xb]]).pvalue >= ALPHA:
        return 0
    return 1 if xa / na > xb / nb else -1


def beats(r: Row, other: Row) -> bool:
    """Whether `r` is better than `other` at the first of worst case 0.3, worst case 0.1 and clean
    accuracy that separates them."""
    for k in (f"worst_case_{EPS_POINTS[1]:g}", f"worst_case_{EPS_POINTS[0]:g}", "clean"):
        sign = separated(r.numbers[k], other.numbers[k])
        if sign:
            return sign > 0
    return False


def _verdict_runs(entries: list[tuple[dict, dict]], numbers: dict[str, Number]) -> list[tuple[dict, dict]]:
    """The (run, model) entries whose verdict the row shows: those of the runs that give its worst
    cases (a verdict concerns the attacks of its own run), all of them if none does."""
    sources = {id(n.run) for k, n in numbers.items() if k.startswith(("worst_case", "e2e")) and n.run is not None}
    return [(r, m) for r, m in entries if id(r) in sources] or entries


def build(results_dir: str | Path) -> Leaderboard:
    read, pending = read_summaries(Path(results_dir))
    carried, now, runs, stale = read_carried(results_dir), components.current(), [], []
    for r in read:
        kept, notes = (None, [r["stale"]]) if r.get("stale") else current_run(r, carried, now)
        if kept is None:
            stale.append({**r, "stale": "; ".join(notes)})
            continue
        kept["lineage"] = None if "components" in r else same_chain(r.get("code"), carried["checks"])
        runs.append(kept)
        stale += [{**r, "stale": "; ".join(notes)}] if notes else []
    groups: dict[str, list[tuple[dict, dict]]] = {}
    for run in runs:
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
    for r in rows:
        r.rank = 1 + sum(beats(o, r) for o in rows if o is not r)
    ood_runs, ood_stale = read_ood(Path(results_dir))
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
                       unmatched)


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


def _with_ci(n: Number) -> str:
    if n.value is None:
        return tables.DASH
    lo, hi = (n.extra or {}).get("interval") or (None, None)
    return tables.pct(n.value) + ("" if lo is None else f" [{tables.pct(lo)}, {tables.pct(hi)}]")


@dataclass
class Cell:
    """One cell of the leaderboard table: its text, the value the page sorts it by (None: missing,
    sorted last) and, for a number with a 95% interval, (value, low, high) in percent: a bar on the page."""
    text: str
    sort: float | str | None = None
    ci: tuple[float, float, float] | None = None

    def plain(self) -> str:
        """The text without its Markdown (code and bold marks), for the page."""
        return self.text.replace("**", "").strip("`")


# The table's numbers with an interval (LEADERBOARD.md and leaderboard.html): header, Row.numbers key.
INTERVAL_COLUMNS = (("clean [95% CI]", "clean_on_worst_case_images"),
                    *[(f"worst case L-inf {e:g} [95% CI]", f"worst_case_{e:g}") for e in EPS_POINTS],
                    (f"e2e L-inf {EPS_POINTS[0]:g} [95% CI]", f"e2e_{EPS_POINTS[0]:g}"))
# The numbers each model's card on the page shows: label, Row.numbers key (a pair: shown as "a / b").
CARD_NUMBERS = (("clean (ranked: the run with most images)", "clean"),
                ("clean on the worst case's images", "clean_on_worst_case_images"),
                *[(f"worst case L-inf {e:g}", f"worst_case_{e:g}") for e in EPS_POINTS],
                *[(f"e2e (accepted and correct) L-inf {e:g}", f"e2e_{e:g}") for e in EPS_POINTS],
                *[(f"OOD AUROC {OOD_DISPLAY[d]}, clean / robust", (f"ood_{d}_clean", f"ood_{d}_robust")) for d in ROBUST_SETS],
                *[(f"{DISPLAY_NAMES[d]} AUROC in the classification run, clean / attacked at L-inf {OOD_EPS:g}",
                   (f"{d}_clean", f"{d}_attacked")) for d in OOD_SETS])
TABLE_HEADER = ["#", "model", "defence", *[h for h, _ in INTERVAL_COLUMNS], "OOD robust AUROC", "verdict"]


def _usual_n(board: Leaderboard, key: str, n: str = "n") -> int | None:
    """The n most rows of a column have (the smallest of the most common), None where no row has one."""
    ns = [(r.numbers[key].extra or {}).get(n) for r in board.rows if r.v(key) is not None]
    ns = [x for x in ns if x is not None]
    return min(ns, key=lambda x: (-ns.count(x), x)) if ns else None


def _n_cell(n: Number, usual: int | None, key: str = "n") -> Cell:
    """A number of the table with its interval (if any), and its n where that is not the column's usual n."""
    if n.value is None:
        return Cell(tables.DASH)
    own = (n.extra or {}).get(key)
    lo, hi = (n.extra or {}).get("interval") or (None, None)
    return Cell(_with_ci(n) + ("" if own == usual else f" (n={own})"), 100 * n.value,
                None if lo is None else (100 * n.value, 100 * lo, 100 * hi))


def _n_notes(usual: dict[str, int | None], n_id: int | None, n_ood: int | None) -> list[str]:
    """The lines under the table that say each column's n."""
    ns = {k: v for k, v in usual.items() if v is not None}
    names = {k: h.split(" [")[0] for h, k in INTERVAL_COLUMNS}
    said = (f"n = {next(iter(ns.values())):,} test images behind every clean, worst-case and e2e number" if len(set(ns.values())) == 1
            else "n: " + ", ".join(f"{names[k]} {v:,}" for k, v in ns.items()) if ns else "no clean or worst case measured")
    return [f"{said}; a number on other images says its n, as (n=...). Clean is measured in the run and on the images of "
            "the row's worst case; the clean number the ranking uses (the run with most images: all 10,000 test images "
            "where a run has them) is in LEADERBOARD.json and the page's cards.",
            f"OOD robust AUROC: the lowest over {', '.join(OOD_DISPLAY[d] for d in ROBUST_SETS)} of the model's best "
            f"rejector at L-inf {OOD_EPS:g}" + (f", n = {n_id:,} MNIST and {n_ood:,} OOD images per set (n= in a cell: "
                                                 "MNIST images)" if n_id else "")
            + "; each set's clean and robust AUROC are in the cards and LEADERBOARD.json."]


def table(board: Leaderboard) -> tuple[list[str], list[list[Cell]], list[str]]:
    """The leaderboard table (at most 9 columns; the rest is in LEADERBOARD.json and the page's
    cards): its header, one row of cells per model, and the notes that say each column's n."""
    usual = {k: _usual_n(board, k) for _, k in INTERVAL_COLUMNS}
    n_id, n_ood = _usual_n(board, "ood_robust_lowest", "n_id"), _usual_n(board, "ood_robust_lowest", "n_ood")
    rows = [[Cell(str(r.rank), r.rank), Cell(f"`{r.display}`", r.display),
             Cell(r.model["identity"]["defence"]["name"], r.model["identity"]["defence"]["name"]),
             *[_n_cell(r.numbers[k], usual[k]) for _, k in INTERVAL_COLUMNS],
             _n_cell(r.numbers["ood_robust_lowest"], n_id, "n_id"),
             Cell(f"**{r.verdict()}**" if r.unreliable else r.verdict(), r.verdict())] for r in board.rows]
    return TABLE_HEADER, rows, _n_notes(usual, n_id, n_ood)


def _lineage_note(run: dict) -> str:
    """How a run made by earlier code counts as current: a pointer to the recorded checks (`_checks`)."""
    chain = run.get("lineage")
    if not chain:
        return ""
    dates = " and ".join(dict.fromkeys(link["date"] for link in chain))
    return (f"; made by earlier code (fingerprint `{str(run.get('code'))[:12]}`), current by the "
            f"check{'s' if len(chain) > 1 else ''} of {dates} below")


def _environment(run: dict) -> str | None:
    """What a run ran on (recorded since component versions; shown, never compared), None if not recorded."""
    env = run.get("environment")
    if not env:
        return None
    return (f"torch {env.get('torch')}, ART {env.get('adversarial-robustness-toolbox')}, numpy {env.get('numpy')}, "
            f"{env.get('device', 'cpu')} ({env.get('processor')})")


def _environment_note(run: dict) -> str:
    env = _environment(run)
    return "" if env is None else f"; ran on {env}"


def _checks(runs: list[dict]) -> list[str]:
    """Each recorded check that links an earlier code's runs to the current code, said once."""
    links = {json.dumps(link, sort_keys=True): link for r in runs for link in r.get("lineage") or []}
    return [f"Check of {k['date']}: `{k['command']}` (earlier commit `{k['old_commit'][:10]}`): {k['checked']} "
            f"(results/{CARRIED})." for k in links.values()]


def render_markdown(board: Leaderboard, results_dir: Path, figure: bool) -> str:
    header, rows, notes = table(board)
    parts = ["# Leaderboard: defended MNIST classifiers", "", *[f"- {rule}" for rule in RULES], "",
             f"Regenerate with `attractor-bench leaderboard --results-dir {results_dir.name}`; {PAGE} shows each model's "
             "card (every number, figures, weights, runs).", "",
             tables.markdown(header, [[c.text for c in cells] for cells in rows]), "", *notes[:1], "", *notes[1:], ""]
    parts += [f"![worst-case robust accuracy against L-inf eps per model]({FIGURE})", ""] if figure else []
    flagged = []
    for r in board.rows:
        for s, why in r.reasons.items():
            more = len(why) - SHOWN_REASONS
            flagged += [f"- `{r.display}` in `{s}`:", *[f"  - {w}" for w in why[:SHOWN_REASONS]]]
            flagged += [f"  - and {more} more (results/{s}/README.md, LEADERBOARD.json)"] if more > 0 else []
    parts += ["## Reliability verdict: the evidence", "",
              "Each raised attack-failure indicator, where it was raised and on which images (indices into the MNIST "
              "test set); docs/reliability.md says what each one measures and why its threshold is what it is.", "",
              *flagged, ""] if flagged else []
    parts += _goal(board) + _at_goals_section(board) + _published()
    parts += ["## Runs", "", *[f"- `{r['suite']}`: `{r['command']}`, commit `{r['commit']}`, {r['date']}"
                               + (", worst case by cascade" if r.get("worst_case_mode") == "cascade" else "")
                               + _lineage_note(r) + _environment_note(r) + "."
                               for r in [*board.runs, *board.ood_runs]], ""]
    checks = _checks([*board.runs, *board.ood_runs])
    parts += [*checks, ""] if checks else []
    if board.ood_unmatched:
        parts += ["## OOD runs of other trainings (not shown)", "",
                  "These models of an OOD run are not the model of any row above (other weights, defence or threshold: "
                  "another training under the same name), so their OOD numbers are not put beside that row's; they are in "
                  "the OOD run's README.", "",
                  *[f"- `{u['model']}` in `{u['suite']}` ({u['date']})." for u in board.ood_unmatched], ""]
    if board.stale:
        parts += ["## Stale results (not ranked)", "",
                  "Made by other code than the current one: their numbers are not comparable with the rows above. "
                  "Regenerate them (scripts/reproduce.sh) to rank them.", "",
                  *[f"- `{r['suite']}` (commit `{r.get('commit')}`, {r.get('date')}): {r['stale']}." for r in board.stale], ""]
    if board.superseded:
        parts += ["## Superseded models (not ranked)", "",
                  "One row per model name: these runs hold an older training (or another defence or threshold) of a "
                  "model under the same name. Rerun their suites with the model cache the newer run used "
                  "(scripts/reproduce.sh shares one) to put every suite on one training.", "",
                  *[f"- `{m['model']}` in {', '.join(f'`{x}`' for x in m['suites'])} ({m['date']}): {m['why']}."
                    for m in board.superseded], ""]
    if board.pending:
        parts += ["## Not on the leaderboard", "",
                  *[f"- `{f}`: no summary.json: rerun its suite with this version." for f in board.pending], ""]
    return "\n".join(parts)


def _goal(board: Leaderboard) -> list[str]:
    """The state-of-the-art reference against its published figure."""
    r = next((r for r in board.rows if r.model["name"] == GOAL["model"]), None)
    if r is None:
        return ["## The state-of-the-art reference against its goal", "",
                f"Not measured: no run in this folder has `{GOAL['model']}` (run suites/leaderboard_sota.yaml). Goal: "
                f"{GOAL['what']}.", ""]
    wc, clean = r.numbers[f"worst_case_{GOAL['eps']:g}"], r.numbers["clean"]
    if wc.value is None:
        return ["## The state-of-the-art reference against its goal", "",
                f"`{r.display}`: no worst case at L-inf {GOAL['eps']:g} measured; goal: {GOAL['what']}.", ""]
    lo, hi = wc.extra["interval"]
    gap = GOAL["robust"] - 100 * wc.value
    verdict = ("meets the goal" if gap <= 0 else f"falls short by {gap:.2f} points (the 95% interval's upper end, "
               f"{100 * hi:.2f}%, is {'above' if 100 * hi >= GOAL['robust'] else 'below'} it)")
    clean_gap = GOAL["clean"] - 100 * (clean.value or 0)
    return ["## The state-of-the-art reference against its goal", "",
            f"Goal: {GOAL['what']}. `{r.display}` keeps {tables.pct(wc.value)}% [{tables.pct(lo)}, {tables.pct(hi)}] "
            f"(n = {wc.extra['n']}) in the worst case at L-inf {GOAL['eps']:g}, over {', '.join(wc.extra['attacks'])} "
            f"(standard AutoAttack among them: the worst case is at most AutoAttack's own accuracy), so it {verdict}; "
            f"clean {tables.pct(clean.value)}% (n = {clean.extra['n']}), "
            + ("meeting the clean goal" if clean_gap <= 0 else f"{clean_gap:.2f} points below the clean goal")
            + _interval_vs(clean, GOAL["clean"]) + "."
            + " docs/leaderboard.md says what closing a gap would take.", ""]


def at_goals(board: Leaderboard) -> dict[str, list[dict]]:
    """Each `attractor_at` row (by preset: the recipe at any parameters) against issue 19's goals:
    per goal what it asks, the measured number, its 95% interval, whether it is met and by how many
    points it is missed ({} without such rows). The worst case at L-inf 0.3 is compared with the
    PGD-trained MLP's on the same images (`separated`: McNemar's exact test where both carry
    per-sample outcomes); the OOD goals read the classification run's AUROC of the similarity
    rejector under its attacks on the OOD images at L-inf 0.1 (per set, the worst of FGSM and the
    rejection-aware attack)."""
    ref = next((r for r in board.rows if r.model["name"] == AT_GOALS["reference"]), None)
    ref_wc = ref.numbers["worst_case_0.3"] if ref else Number(None)
    return {r.model["name"]: [_goal_status(**g) for g in _goals_of(r, ref_wc)] for r in board.rows
            if r.model.get("preset") == AT_GOALS["preset"]}


def _goals_of(r: Row, ref_wc: Number) -> list[dict]:
    wc = r.numbers["worst_case_0.3"]
    goals = [{"goal": f"worst case L-inf 0.3 >= `{AT_GOALS['reference']}`'s", "number": wc,
              "target": None if ref_wc.value is None else 100 * ref_wc.value,
              "separated": None if ref_wc.value is None or wc.value is None else separated(wc, ref_wc)},
             {"goal": f"clean accuracy >= {AT_GOALS['clean']:g}%", "number": r.numbers["clean"], "target": AT_GOALS["clean"]},
             {"goal": f"end to end (accepted and correct) at L-inf {AT_GOALS['e2e_eps']:g} >= {AT_GOALS['e2e']:g}%",
              "number": r.numbers[f"e2e_{AT_GOALS['e2e_eps']:g}"], "target": AT_GOALS["e2e"]}]
    return goals + [{"goal": f"OOD AUROC against {DISPLAY_NAMES[ds]} under the rejection-aware attack (L-inf {OOD_EPS:g}) "
                             f">= {AT_GOALS['ood_auroc']:g}%", "number": r.numbers[f"{ds}_attacked"],
                     "target": AT_GOALS["ood_auroc"]} for ds in AT_GOALS["ood_sets"]]


def _goal_status(goal: str, number: Number, target: float | None, **compared) -> dict:
    value = None if number.value is None else 100 * number.value
    missed = None if value is None or target is None else round(max(0.0, target - value), 2)
    met = None if missed is None else missed == 0 and (compared.get("separated") or 0) >= 0
    return {"goal": goal, "value": value, "interval": (number.extra or {}).get("interval"), "target": target, "met": met,
            "short_by": missed, **({"separated_from_reference": compared["separated"]} if compared else {}),
            "attack": (number.extra or {}).get("attack")}


def _at_goals_section(board: Leaderboard) -> list[str]:
    by_model = at_goals(board)
    head = f"## `{AT_GOALS['preset']}` against its goals (issue 19)"
    if not by_model:
        return [head, "", f"Not measured: no run in this folder has an `{AT_GOALS['preset']}` model (run "
                          "suites/leaderboard_attractor_at.yaml).", ""]
    rows = []
    for name, goals in by_model.items():
        for g in goals:
            lo, hi = g["interval"] or (None, None)
            measured = tables.DASH if g["value"] is None else f"{g['value']:.2f}" + (
                "" if lo is None else f" [{100 * lo:.2f}, {100 * hi:.2f}]")
            status = {None: "not measured", True: "met", False: "missed"}[g["met"]]
            if g["met"] is False and g["short_by"]:
                status += f" by {g['short_by']:.2f} points"
            if g.get("separated_from_reference") is not None:
                status += " (" + {1: "better", 0: "not separated", -1: "worse"}[g["separated_from_reference"]] + f" at p < {ALPHA:g})"
            rows.append([f"`{name}`", g["goal"], measured, tables.DASH if g["target"] is None else f"{g['target']:.2f}", status])
    return [head, "",
            "The attractor network trained adversarially through its pipeline (models/attractor_at.py), set against what "
            "issue 19 asks of it, from the rows above (the OOD goals from the classification run's attacks on the OOD "
            "images; the OOD columns of the table attack the scores directly). A goal is met when its number reaches the "
            "target (and, for the worst case, the reference is not better at p < 0.05).", "",
            tables.markdown(["model", "goal", "measured [95% CI]", "target", "status"], rows), ""]


def _interval_vs(n: Number, goal: float) -> str:
    """Whether the 95% interval of `n` lies above, below or around `goal` (percent)."""
    iv = (n.extra or {}).get("interval")
    if not iv:
        return ""
    lo, hi = 100 * iv[0], 100 * iv[1]
    where = "above" if lo > goal else "below" if hi < goal else "around"
    return f" (95% interval [{lo:.2f}, {hi:.2f}]: {where} {goal:g}%)"


def _published() -> list[str]:
    rows = [[i, f"[{paper}]({link})", f"{clean:.2f}", f"{reported:.2f}", f"{aa:.2f}"]
            for i, (paper, link, clean, reported, aa) in enumerate(MNIST_LINF_03, 1)]
    return ["## Published, not measured here", "",
            f"Source: {SOURCE}. Where a measured row above is better than a published one, check its n and its interval "
            "before reading anything into it.", "",
            tables.markdown(["#", "paper", "clean", "reported", "standard AutoAttack"], rows), ""]


def _frac(v: float | None) -> str:
    return "" if v is None else f"{v:.6f}"


def _flat(r: Row, rank: int) -> dict:
    """One LEADERBOARD.csv line: fractions, empty where missing."""
    m = r.model
    ci = lambda n: (n.extra or {}).get("interval") or (None, None)
    d = {"rank": r.rank, "position": rank, "model": r.display, "name": m["name"], "weights": m["identity"]["weights"] or "",
         "defence": m["identity"]["defence"]["name"], "randomized": "yes" if m["randomized"] else "no",
         "threshold": _frac(m["identity"]["threshold"]), "unreliable": {None: "", True: "yes", False: "no"}[r.unreliable],
         "unreliable_at": ";".join(r.unreliable_at),
         "clean": _frac(r.v("clean")), "clean_n": (r.numbers["clean"].extra or {}).get("n", ""),
         "clean_ci_low": _frac(ci(r.numbers["clean"])[0]), "clean_ci_high": _frac(ci(r.numbers["clean"])[1])}
    for e in EPS_POINTS:
        k, n = f"worst_case_linf_{e:g}", r.numbers[f"worst_case_{e:g}"]
        d.update({k: _frac(n.value), f"{k}_n": (n.extra or {}).get("n", ""), f"{k}_ci_low": _frac(ci(n)[0]),
                  f"{k}_ci_high": _frac(ci(n)[1])})
        k, n = f"e2e_linf_{e:g}", r.numbers[f"e2e_{e:g}"]
        d.update({k: _frac(n.value), f"{k}_ci_low": _frac(ci(n)[0]), f"{k}_ci_high": _frac(ci(n)[1])})
    for ds in OOD_SETS:
        k = f"ood_auroc_{ds}"
        d.update({f"{k}_clean": _frac(r.v(f"{ds}_clean")), f"{k}_linf_{OOD_EPS:g}": _frac(r.v(f"{ds}_attacked")),
                  f"{k}_linf_{OOD_EPS:g}_attack": (r.numbers[f"{ds}_attacked"].extra or {}).get("attack") or ""})
    d["ood_rejector"] = (r.numbers["ood_rejector"].extra or {}).get("rejector", "")
    for ds in ROBUST_SETS:
        d.update({f"ood_{ds}_auroc_clean": _frac(r.v(f"ood_{ds}_clean")),
                  f"ood_{ds}_auroc_robust_linf_{OOD_EPS:g}": _frac(r.v(f"ood_{ds}_robust"))})
    return {**d, "suites": ";".join(r.suites)}


def render_csv(board: Leaderboard) -> str:
    rows = [_flat(r, i) for i, r in enumerate(board.rows, 1)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["rank", "model"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def render_json(board: Leaderboard) -> str:
    rows = [{"rank": r.rank, "position": i, "model": r.display, "name": r.model["name"], **r.model["identity"],
             "randomized": r.model["randomized"],
             "unreliable": r.unreliable, "unreliable_at": r.unreliable_at, "indicators_raised": r.reasons, "suites": r.suites,
             "numbers": {k: n.as_json() for k, n in r.numbers.items()}} for i, r in enumerate(board.rows, 1)]
    runs = {r["suite"]: {**{k: r.get(k) for k in ("command", "commit", "date")},
                         **({"current_by": r["lineage"]} if r.get("lineage") else {})} for r in [*board.runs, *board.ood_runs]}
    stale = {r["suite"]: {"commit": r.get("commit"), "date": r.get("date"), "why": r["stale"]} for r in board.stale}
    published = [dict(zip(("paper", "link", "clean", "reported", "autoattack"), p)) for p in MNIST_LINF_03]
    return dumps({"format": FORMAT, "rules": " ".join(RULES), "rows": rows, "runs": runs, "not_on_the_leaderboard": board.pending,
                  "stale": stale, "superseded": board.superseded,
                  "attractor_at_goals": at_goals(board), "ood_other_trainings": board.ood_unmatched, "published_not_measured_here": {"source": SOURCE, "mnist_linf_0.3": published}})


def _series(board: Leaderboard) -> dict[str, list[tuple[float, float, int]]]:
    """Per model, (eps, worst case, images) against L-inf eps from the run that gives its number at 0.3 (else at 0.1)."""
    series = {}
    for r in board.rows:
        src = r.numbers[f"worst_case_{EPS_POINTS[1]:g}"].run or r.numbers[f"worst_case_{EPS_POINTS[0]:g}"].run
        model = next((m for m in (src or {}).get("models", []) if m["name"] == r.model["name"]), None)
        if model is not None:
            series[r.display] = sorted((w["eps"], w["accuracy"], w["n"]) for w in model["worst_case"]
                                       if w["norm"] == NORM and not w["all_images"])
    return series


def summary_table(board: Leaderboard):
    header = ["#", "model", "clean", *[f"wc {e:g}" for e in EPS_POINTS], f"e2e {EPS_POINTS[1]:g}", "verdict"]
    rows = [[r.rank, r.display, r.pct("clean"), *[r.pct(f"worst_case_{e:g}") for e in EPS_POINTS], r.pct(f"e2e_{EPS_POINTS[1]:g}"),
             r.verdict()] for r in board.rows]
    return tables.terminal("Leaderboard: worst case per sample over each run's L-inf attacks, %", header, rows,
                           right=set(header[:1] + header[2:-1]))


def render_page(board: Leaderboard, results_dir: Path, figure: bool) -> str:
    """leaderboard.html (page.py): the table of LEADERBOARD.md, sortable, and one card per model."""
    header, rows, notes = table(board)
    runs = {r["suite"]: {"command": r.get("command"), "commit": r.get("commit"), "date": r.get("date"),
                         "environment": _environment(r) or "not recorded"} for r in [*board.runs, *board.ood_runs]}
    return page.render(board, header, rows, notes, list(RULES), results_dir=results_dir, figure=FIGURE if figure else None,
                       card_numbers=list(CARD_NUMBERS), runs=runs,
                       prose={"alpha": f"{ALPHA:g}", "ood_eps": f"{OOD_EPS:g}", "dash": tables.DASH})


def write_leaderboard(results_dir: str | Path) -> tuple[Leaderboard, list[Path]]:
    """Build the leaderboard and write its files into `results_dir`, all or none; return them."""
    results_dir = Path(results_dir)
    board = build(results_dir)
    series = _series(board)
    with atomic_folder(results_dir) as tmp:
        if series:
            plots.worst_case_vs_eps(series, tmp / FIGURE, FIGURE_TITLE)
        (tmp / "LEADERBOARD.md").write_text(render_markdown(board, results_dir, bool(series)), encoding="utf-8")
        (tmp / "LEADERBOARD.csv").write_text(render_csv(board), encoding="utf-8")
        (tmp / "LEADERBOARD.json").write_text(render_json(board), encoding="utf-8")
        (tmp / PAGE).write_text(render_page(board, results_dir, bool(series)), encoding="utf-8")
    return board, [results_dir / n for n in (*FILES, *([FIGURE] if series else []))]
