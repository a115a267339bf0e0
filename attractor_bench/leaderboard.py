"""A RobustBench-style leaderboard over every run in a results folder.

`attractor-bench leaderboard` reads `<results-dir>/*/results.csv` with each folder's `run.json`
and writes `LEADERBOARD.md`, `LEADERBOARD.csv`, `LEADERBOARD.json` and the figure
`leaderboard_worst_case.png` into `<results-dir>`: one row per model, ranked by worst-case
robust accuracy at L-inf eps 0.3, then 0.1, then clean accuracy, then name (missing values last).

Rules (also written into LEADERBOARD.json's `columns_doc` and the markdown):

- Identity of a model. A run that records the weights fingerprint (`run.json` models[name]
  ["weights"]) identifies a model by (name, weights, defence, rejector threshold): the same
  trained network under the same defence is one model, whichever suite evaluated it. (The
  defence and threshold are part of it because the same weights under another defence are
  another classifier.) A run without fingerprints (runs before they were recorded) makes one
  model per (suite, name).
- Merging. When one model was measured in several suites, each number is taken from the suite
  that measured it with the most attacks at that eps (`n_attacks`; 0 for clean numbers); ties go
  to the later run date, then to the alphabetically first suite name. Every number keeps its
  suite, commit and date. The e2e number at an eps comes from the same run as the worst case there.
  A model is potentially unreliable if any of its runs raised a sanity flag.
- Display names. A name that belongs to one model is shown as is. When several models share a
  name, every one of them is shown as "name (suite, suite...)" with the suites it was measured
  in (sorted), which are disjoint for models that share a name.
- Attacks of a worst case: the run's attacks of norm L-inf with that eps, from `run.json`
  ["attacks"]; runs before that record are read from the suite file at run.json["suite_path"]
  as it is now, accepted only if its attack labels are exactly those in results.csv, else the
  attacks are "not recorded" (the attacked OOD AUROC then stays missing: the norm of an attack
  is not guessed).

Nothing here depends on the time it runs: the same results give byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import AttractorBenchError, ConfigError

COLUMNS = ("model", "attack", "eps", "dataset", "metric", "value")
EPS_POINTS = (0.1, 0.3)
OOD_EPS = 0.1
OOD_SETS = {"fashion_mnist": "Fashion-MNIST", "cifar10_bw": "CIFAR-10-bw"}
TOL = 1e-9
FILES = ("LEADERBOARD.md", "LEADERBOARD.csv", "LEADERBOARD.json")
FIGURE = "leaderboard_worst_case.png"
DASH = "—"
UNRELIABLE = "⚠ potentially unreliable"
_NOT_ATTACKS = {"none", "sanity"}


def _eps_key(e: float) -> str:
    return f"{e:g}"


def metric_keys() -> list[str]:
    keys = ["clean_accuracy"]
    for e in EPS_POINTS:
        keys += [f"worst_case_linf_{_eps_key(e)}", f"end_to_end_linf_{_eps_key(e)}"]
    for ds in OOD_SETS:
        keys += [f"ood_auroc_{ds}_clean", f"ood_auroc_{ds}_linf_{_eps_key(OOD_EPS)}"]
    return keys


COLUMNS_DOC = {
    "model": "Display name: the model's name, or 'name (suites)' when several models (different weights, defence or "
             "threshold; or runs without weight fingerprints) share that name.",
    "name": "The model's name in its suite(s).",
    "weights": "Fingerprint of the trained weights (null for runs that did not record it).",
    "defence": "The defence the model was evaluated with (run.json models[name].defence.name; 'attractor' for runs "
               "before that was recorded).",
    "randomized": "true when the predictions are random (evaluated with EoT); false for runs before that was recorded.",
    "threshold": "The OOD rejector's threshold; null when the model has no rejector.",
    "unreliable": "true if any run of the model raised a sanity flag (Carlini et al. 2019 / AutoAttack style checks, "
                  "see robustness.py), false if checked and none was raised, null if no run checked.",
    "suites": "The suites whose numbers are in the row.",
    "numbers": "Per metric: value (a fraction, null when missing), suite, commit and date of the run it comes from.",
    "clean_accuracy": "Accuracy on clean MNIST test images (attack 'none', eps 0).",
    **{f"worst_case_linf_{_eps_key(e)}": f"Worst-case robust accuracy at L-inf eps {e:g}: an image counts only if it is "
       "classified correctly clean and under every L-inf attack the run ran at that eps, on the images all those attacks "
       "saw (n images; attacks lists their labels, n_attacks their number)." for e in EPS_POINTS},
    **{f"end_to_end_linf_{_eps_key(e)}": f"End-to-end accuracy at L-inf eps {e:g} in the worst case: accepted by the OOD "
       "rejector and correct clean and under every attack (same run and images as the worst case); only for models "
       "with a rejector." for e in EPS_POINTS},
    **{f"ood_auroc_{ds}_clean": f"AUROC of the OOD rejector, MNIST against {label}, clean images."
       for ds, label in OOD_SETS.items()},
    **{f"ood_auroc_{ds}_linf_{_eps_key(OOD_EPS)}": f"Lowest AUROC of the OOD rejector, MNIST against {label}, over the "
       f"run's L-inf attacks at eps {OOD_EPS:g} on that set (attack names the attack, attacks the ones compared)."
       for ds, label in OOD_SETS.items()},
    "merge_rule": "A model measured in several suites takes each number from the suite with the most attacks at that "
                  "eps (n_attacks), ties to the later run date, then the alphabetically first suite name.",
    "sort": "Worst-case accuracy at L-inf 0.3 descending, then at 0.1, then clean accuracy, then model; missing last.",
}


# ---------------------------------------------------------------------------------------------
# reading


@dataclass
class Run:
    suite: str
    folder: Path
    table: pd.DataFrame
    meta: dict
    attacks: dict[str, dict] | None  # label -> {"norm", "eps", ...}; None: not recorded
    attacks_from: str  # where `attacks` came from, or why they are not recorded
    caveats: list[str] = field(default_factory=list)

    @property
    def date(self) -> str:
        return str(self.meta.get("date") or "unknown")

    @property
    def commit(self) -> str:
        return str(self.meta.get("commit") or "unknown")

    @property
    def date_key(self) -> datetime:
        d = self.meta.get("date")
        for parse in (lambda s: datetime.strptime(s, "%Y-%m-%d %H:%M UTC"), datetime.fromisoformat):
            try:
                return parse(str(d)).replace(tzinfo=None)
            except (TypeError, ValueError):
                pass
        return datetime.min

    def labels(self, norm: str, eps: float, model: str | None = None) -> list[str] | None:
        """Labels of the run's attacks of `norm` with `eps` in their eps list (None: not recorded); with
        `model`, only the attacks that ran on it (run.json lists the models of attacks that apply to
        some models only, such as the rejection-aware attack)."""
        if self.attacks is None:
            return None
        return [lab for lab, a in self.attacks.items()
                if a.get("norm") == norm and any(abs(float(e) - eps) <= TOL for e in a.get("eps") or ())
                and (model is None or a.get("models") is None or model in a["models"])]


def _read_table(path: Path, results_dir: Path) -> pd.DataFrame:
    fix = f"rerun the suite (attractor-bench run <suite>), or move {path.parent} out of {results_dir}"
    try:
        t = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise AttractorBenchError(f"{path}: not a readable results table ({e}); {fix}.") from e
    missing = [c for c in COLUMNS if c not in t.columns]
    if missing:
        raise AttractorBenchError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)}); "
                                  f"it was not written by `attractor-bench run` or is damaged: {fix}.")
    t = t[list(COLUMNS)].copy()
    for c in ("model", "attack", "dataset", "metric"):
        if t[c].isna().any():
            raise AttractorBenchError(f"{path}: empty {c!r} in row(s) {_rows(t[c].isna())}; {fix}.")
        t[c] = t[c].astype(str)
    for c in ("eps", "value"):
        num = pd.to_numeric(t[c], errors="coerce")
        bad = (num.isna() & t[c].notna()) if c == "value" else num.isna()  # an empty value is NaN (e.g. no rejector)
        if bad.any():
            raise AttractorBenchError(f"{path}: {c!r} is not a number in row(s) {_rows(bad)}; {fix}.")
        t[c] = num.astype(float)
    return t


def _rows(mask: pd.Series) -> str:
    idx = [str(i + 2) for i in np.flatnonzero(mask.to_numpy())]  # line numbers in the file (header is line 1)
    return ", ".join(idx[:5]) + (" ..." if len(idx) > 5 else "")


def _read_meta(folder: Path, results_dir: Path) -> dict:
    path = folder / "run.json"
    fix = f"rerun the suite (attractor-bench run <suite>) to write it again, or move {folder} out of {results_dir}"
    if not path.is_file():
        raise AttractorBenchError(f"{path} is missing: every results folder needs the run.json written beside its "
                                  f"results.csv; {fix}.")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise AttractorBenchError(f"{path}: not valid JSON ({e}); {fix}.") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("models"), dict):
        raise AttractorBenchError(f"{path}: expected a JSON object with a 'models' mapping; {fix}.")
    return meta


def _recorded_attacks(meta: dict, folder: Path, csv_labels: set[str]) -> tuple[dict[str, dict] | None, str]:
    raw = meta.get("attacks")
    if isinstance(raw, dict):
        return {str(k): dict(v) for k, v in raw.items() if isinstance(v, dict)}, "run.json"
    suite_path = meta.get("suite_path")
    if not suite_path:
        return None, "not recorded: run.json has neither 'attacks' nor 'suite_path'"
    from .config import load_suite

    why = "not found"
    candidates = [Path(suite_path)] + ([] if Path(suite_path).is_absolute() else [folder.parent.parent / suite_path])
    for cand in candidates:
        if not cand.is_file():
            continue
        try:
            suite = load_suite(cand)
        except (AttractorBenchError, LookupError, ImportError, OSError, ValueError, TypeError) as e:
            why = f"not loadable: {e}"
            continue
        attacks = {a.label: {"name": a.name, "norm": a.norm, "kind": a.entry.kind, "target": a.target.value, "n": a.n,
                             "eps": [float(e) for e in a.eps]} for a in suite.attacks}
        if set(attacks) != csv_labels:
            why = (f"its attacks ({', '.join(sorted(attacks)) or 'none'}) are no longer those in results.csv "
                   f"({', '.join(sorted(csv_labels)) or 'none'})")
            continue
        return attacks, (f"the suite file `{suite_path}` as it is now (this run predates the record of attacks in "
                         "run.json)")
    return None, f"not recorded: run.json has no 'attacks' and the suite file `{suite_path}` is {why}"


def read_runs(results_dir: str | Path) -> list[Run]:
    """Every run under `results_dir`, checked; raises before anything is written."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ConfigError(f"results folder {results_dir} does not exist{' (it is a file)' if results_dir.exists() else ''}; "
                          "pass --results-dir with the folder `attractor-bench run` wrote to (default: results), "
                          "or run a suite first.")
    paths = sorted(p for p in results_dir.glob("*/results.csv") if not p.parent.name.startswith("."))
    if not paths:
        raise ConfigError(f"no <suite>/results.csv under {results_dir}; pass --results-dir with the folder "
                          "`attractor-bench run` wrote to (default: results), or run a suite first.")
    runs = []
    for path in paths:
        folder = path.parent
        table = _read_table(path, results_dir)
        meta = _read_meta(folder, results_dir)
        unknown = sorted(set(table.model) - set(meta["models"]))
        if unknown:
            raise AttractorBenchError(f"{folder}: model(s) {', '.join(unknown)} of results.csv are not in run.json's "
                                      "models, so the two files do not belong together; rerun the suite.")
        csv_labels = set(table.attack) - _NOT_ATTACKS - {a for a in table.attack if a.startswith("worst_case_")}
        attacks, source = _recorded_attacks(meta, folder, csv_labels)
        run = Run(folder.name, folder, table, meta, attacks, source)
        _check_counts(run)
        runs.append(run)
    return runs


def _rows_of(t: pd.DataFrame, attack: str | None, eps: float, dataset: str, metric: str) -> pd.DataFrame:
    sel = (t.dataset == dataset) & (t.metric == metric) & ((t.eps - eps).abs() <= TOL)
    if attack is not None:
        sel &= t.attack == attack
    return t[sel]


def _value(t: pd.DataFrame, attack: str, eps: float, dataset: str, metric: str) -> float | None:
    rows = _rows_of(t, attack, eps, dataset, metric)
    if not len(rows):
        return None
    v = float(rows.value.iloc[0])
    return None if math.isnan(v) else v


def _check_counts(run: Run) -> None:
    """A caveat where the recorded attack list does not match the worst case's own count."""
    for eps in EPS_POINTS:
        for model in dict.fromkeys(run.table.model):
            labels = run.labels("linf", eps, model)
            if labels is None:
                continue
            rows = _rows_of(run.table[run.table.model == model], "worst_case_linf", eps, "mnist", "n_attacks")
            counts = {int(v) for v in rows.value.dropna()}
            if counts and counts != {len(labels)}:
                run.caveats.append(f"at L-inf eps {eps:g} the worst case of `{model}` counted "
                                   f"{'/'.join(map(str, sorted(counts)))} attacks but the recorded list has {len(labels)}: "
                                   "the attack list may not be exact")


# ---------------------------------------------------------------------------------------------
# one model in one run, and the merge


@dataclass
class Entry:
    run: Run
    name: str
    table: pd.DataFrame  # this model's rows
    weights: str | None
    defence: str
    defence_key: str
    randomized: bool
    threshold: float | None

    @property
    def identity(self) -> tuple:
        if self.weights is None:
            return ("run", self.run.suite, self.name)
        return ("weights", self.name, self.weights, self.defence_key, repr(self.threshold))


def _entries(run: Run) -> list[Entry]:
    out = []
    for name in dict.fromkeys(run.table.model):  # order of first appearance
        m = run.meta["models"].get(name) or {}
        d = m.get("defence")
        defence = str(d.get("name")) if isinstance(d, dict) and d.get("name") else "attractor"
        defence_key = json.dumps(d if isinstance(d, dict) else {"name": "attractor"}, sort_keys=True, default=str)
        thr = m.get("threshold")
        weights = m.get("weights")
        out.append(Entry(run, name, run.table[run.table.model == name], str(weights) if weights else None, defence,
                         defence_key, bool(m.get("randomized", False)),
                         float(thr) if isinstance(thr, (int, float)) and not isinstance(thr, bool) else None))
    return out


@dataclass
class Number:
    value: float | None
    entry: Entry | None = None
    n_attacks: int = 0
    extra: dict = field(default_factory=dict)  # n, attacks, attack, ...
    note: str | None = None

    def as_json(self) -> dict:
        d = {"value": _round(self.value)}
        if self.entry is not None:
            d.update(suite=self.entry.run.suite, commit=self.entry.run.commit, date=self.entry.run.date,
                     n_attacks=self.n_attacks)
        d.update(self.extra)
        if self.note:
            d["note"] = self.note
        return d


def _pick(cands: list[Number]) -> Number | None:
    """Most attacks, then the later run date, then the alphabetically first suite name."""
    cands = sorted(cands, key=lambda c: c.entry.run.suite)
    cands.sort(key=lambda c: c.entry.run.date_key, reverse=True)  # stable: equal dates keep the name order
    cands.sort(key=lambda c: c.n_attacks, reverse=True)
    return cands[0] if cands else None


def _worst_case(e: Entry, eps: float) -> Number | None:
    t = e.table
    acc = _value(t, "worst_case_linf", eps, "mnist", "accuracy")
    if acc is None:
        return None
    n = _value(t, "worst_case_linf", eps, "mnist", "n_samples")
    k = _value(t, "worst_case_linf", eps, "mnist", "n_attacks")
    labels = e.run.labels("linf", eps, e.name)
    extra = {"n": None if n is None else int(n), "attacks": labels}
    return Number(acc, e, 0 if k is None else int(k), extra,
                  None if labels is not None else "attacks " + e.run.attacks_from)


def _ood_attacked(e: Entry, ds: str) -> tuple[Number | None, str | None]:
    labels = e.run.labels("linf", OOD_EPS, e.name)
    rows = _rows_of(e.table, None, OOD_EPS, ds, "ood_auroc")
    rows = rows[~rows.attack.isin(_NOT_ATTACKS) & ~rows.attack.str.startswith("worst_case_") & rows.value.notna()]
    if not len(rows):
        return None, None
    if labels is None:
        return None, f"attacked AUROC of `{e.run.suite}` left out: attack norms " + e.run.attacks_from
    rows = rows[rows.attack.isin(labels)]
    if not len(rows):
        return None, None
    rows = rows.sort_values(["value", "attack"], kind="mergesort")
    best = rows.iloc[0]
    return Number(float(best.value), e, len(rows), {"attack": str(best.attack), "attacks": sorted(rows.attack)}), None


@dataclass
class Row:
    display: str
    entries: list[Entry]
    numbers: dict[str, Number]
    unreliable: bool | None
    flags: dict[str, list[str]]  # suite -> raised flags

    @property
    def first(self) -> Entry:
        return self.entries[0]

    def value(self, key: str) -> float | None:
        return self.numbers[key].value

    @property
    def suites(self) -> list[str]:
        return sorted({n.entry.run.suite for n in self.numbers.values() if n.entry is not None})


@dataclass
class Leaderboard:
    rows: list[Row]
    runs: list[Run]


def _merge(entries: list[Entry]) -> tuple[dict[str, Number], bool | None, dict[str, list[str]]]:
    numbers: dict[str, Number] = {}
    clean = [Number(v, e) for e in entries for v in [_value(e.table, "none", 0.0, "mnist", "accuracy")] if v is not None]
    numbers["clean_accuracy"] = _pick(clean) or Number(None, note="not measured")
    rejects = entries[0].threshold is not None
    for eps in EPS_POINTS:
        k = _eps_key(eps)
        wc = _pick([n for e in entries for n in [_worst_case(e, eps)] if n is not None])
        numbers[f"worst_case_linf_{k}"] = wc or Number(None, note=f"no worst_case_linf row at eps {eps:g}")
        if not rejects:
            numbers[f"end_to_end_linf_{k}"] = Number(None, note="no OOD rejector")
        elif wc is None:
            numbers[f"end_to_end_linf_{k}"] = Number(None, note=f"no worst_case_linf row at eps {eps:g}")
        else:
            e2e = _value(wc.entry.table, "worst_case_linf", eps, "mnist", "end_to_end_accuracy")
            numbers[f"end_to_end_linf_{k}"] = Number(e2e, wc.entry, wc.n_attacks, dict(wc.extra), wc.note)
    for ds in OOD_SETS:
        cands = [Number(v, e) for e in entries for v in [_value(e.table, "none", 0.0, ds, "ood_auroc")] if v is not None]
        numbers[f"ood_auroc_{ds}_clean"] = _pick(cands) or Number(
            None, note="no OOD rejector" if not rejects else f"not measured on {OOD_SETS[ds]}")
        attacked, notes = [], []
        for e in entries:
            n, why = _ood_attacked(e, ds)
            attacked += [n] if n is not None else []
            notes += [why] if why else []
        numbers[f"ood_auroc_{ds}_linf_{_eps_key(OOD_EPS)}"] = _pick(attacked) or Number(
            None, note="; ".join(notes) or ("no OOD rejector" if not rejects
                                            else f"no L-inf attack at eps {OOD_EPS:g} on {OOD_SETS[ds]}"))
    checked, flags = [], {}
    for e in entries:
        v = _value(e.table, "sanity", 0.0, "mnist", "potentially_unreliable")
        if v is None:
            continue
        checked.append(bool(v))
        if v:
            s = e.table[(e.table.attack == "sanity") & (e.table.dataset == "mnist") & e.table.metric.str.startswith("flag_")]
            flags[e.run.suite] = sorted(s.metric[s.value == 1]) or ["potentially_unreliable"]
    unreliable = any(checked) if checked else None
    return numbers, unreliable, flags


def _sort_key(row: Row) -> tuple:
    key = []
    for k in (f"worst_case_linf_{_eps_key(0.3)}", f"worst_case_linf_{_eps_key(0.1)}", "clean_accuracy"):
        v = row.value(k)
        key.append((1, 0.0) if v is None else (0, -v))
    return (*key, row.display, row.first.identity)


def build(results_dir: str | Path) -> Leaderboard:
    runs = read_runs(results_dir)
    groups: dict[tuple, list[Entry]] = {}
    for run in runs:
        for e in _entries(run):
            groups.setdefault(e.identity, []).append(e)
    by_name: dict[str, list[tuple]] = {}
    for ident, entries in groups.items():
        by_name.setdefault(entries[0].name, []).append(ident)
    rows = []
    for ident, entries in groups.items():
        numbers, unreliable, flags = _merge(entries)
        name = entries[0].name
        display = name
        if len(by_name[name]) > 1:
            display = f"{name} ({', '.join(sorted({e.run.suite for e in entries}))})"
        rows.append(Row(display, entries, numbers, unreliable, flags))
    rows.sort(key=_sort_key)
    return Leaderboard(rows, runs)


# ---------------------------------------------------------------------------------------------
# writing


def _round(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 6)


def _pct(v: float | None) -> str:
    return DASH if v is None else f"{100 * v:.2f}"


def _frac(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


def _verdict(u: bool | None) -> str:
    return "not checked" if u is None else UNRELIABLE if u else "no flag"


def render_json(board: Leaderboard) -> str:
    rows = []
    for rank, r in enumerate(board.rows, 1):
        e = r.first
        rows.append({"rank": rank, "model": r.display, "name": e.name, "weights": e.weights, "defence": e.defence,
                     "randomized": e.randomized, "threshold": _round(e.threshold), "unreliable": r.unreliable,
                     "flags_raised": r.flags, "suites": r.suites,
                     "numbers": {k: n.as_json() for k, n in r.numbers.items()}})
    runs = {run.suite: {"date": run.date, "commit": run.commit, "command": run.meta.get("command"),
                        "attacks_from": run.attacks_from, "caveats": run.caveats,
                        "worst_case_linf_attacks": {_eps_key(e): run.labels("linf", e) for e in EPS_POINTS}}
            for run in board.runs}
    doc = {"columns_doc": COLUMNS_DOC, "rows": rows, "runs": runs}
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


CSV_HEADER = ["rank", "model", "name", "weights", "defence", "randomized", "threshold", "unreliable", *metric_keys(),
              *[f"worst_case_linf_{_eps_key(e)}_n" for e in EPS_POINTS],
              *[f"ood_auroc_{ds}_linf_{_eps_key(OOD_EPS)}_attack" for ds in OOD_SETS],
              "suites", "commits", "dates", "provenance"]


def render_csv(board: Leaderboard) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    by_suite = {run.suite: run for run in board.runs}
    for rank, r in enumerate(board.rows, 1):
        e = r.first
        w.writerow([rank, r.display, e.name, e.weights or "", e.defence, "yes" if e.randomized else "no",
                    "" if e.threshold is None else f"{e.threshold:g}",
                    "" if r.unreliable is None else "yes" if r.unreliable else "no",
                    *[_frac(r.value(k)) for k in metric_keys()],
                    *["" if r.numbers[f"worst_case_linf_{_eps_key(x)}"].extra.get("n") is None
                      else r.numbers[f"worst_case_linf_{_eps_key(x)}"].extra["n"] for x in EPS_POINTS],
                    *[r.numbers[f"ood_auroc_{ds}_linf_{_eps_key(OOD_EPS)}"].extra.get("attack", "") for ds in OOD_SETS],
                    ";".join(r.suites), ";".join(by_suite[s].commit for s in r.suites),
                    ";".join(by_suite[s].date for s in r.suites),
                    ";".join(f"{k}={n.entry.run.suite}" for k, n in r.numbers.items() if n.entry is not None)])
    return buf.getvalue()


def _md(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _code_list(labels: list[str]) -> str:
    return ", ".join(f"`{x}`" for x in labels)


def _short(key: str) -> str:
    """A metric key in words: `ood_auroc_fashion_mnist_linf_0.1` -> `Fashion-MNIST AUROC at L-inf 0.1`."""
    if key == "clean_accuracy":
        return "clean"
    for ds, label in OOD_SETS.items():
        if key == f"ood_auroc_{ds}_clean":
            return f"{label} AUROC clean"
        if key == f"ood_auroc_{ds}_linf_{_eps_key(OOD_EPS)}":
            return f"{label} AUROC at L-inf {OOD_EPS:g}"
    return key.replace("worst_case_linf_", "worst case L-inf ").replace("end_to_end_linf_", "e2e L-inf ")


def _describe(key: str, n: Number) -> str:
    if "attack" in n.extra:
        return f"{_short(key)} (lowest under `{n.extra['attack']}`, of {_code_list(n.extra['attacks'])})"
    if key.startswith("worst_case"):
        return f"{_short(key)} ({n.n_attacks} attacks, n = {n.extra.get('n')})"
    return _short(key)


def render_markdown(board: Leaderboard, figure: bool) -> str:
    a, b = (_eps_key(e) for e in EPS_POINTS)
    o = _eps_key(OOD_EPS)
    parts = ["# Leaderboard: defended MNIST classifiers", "",
             "One row per model over every run in this folder, ranked by worst-case robust accuracy at L-inf eps 0.3, "
             "then 0.1, then clean accuracy (missing values last). *Worst case*: an image counts as robust only if it is "
             "classified correctly clean and under every L-inf attack the run ran at that eps, per sample, on the images "
             "every one of those attacks saw (n); the attacks of each worst case are listed per run below. *e2e*: accepted "
             "by the OOD rejector and correct in that worst case (only for models with a rejector). *OOD AUROC*: MNIST "
             f"against the OOD set, clean / attacked = the lowest over the run's L-inf attacks at eps {o}. Randomized "
             "models are evaluated with EoT. A model measured in several suites takes each number from the suite with "
             "the most attacks at that eps (then the later run). All numbers in percent; "
             f"{DASH} = not measured. Regenerate with `attractor-bench leaderboard`.", ""]
    header = ["#", "model", "defence", "randomized", "clean", f"worst case L-inf {a} (n)", f"worst case L-inf {b} (n)",
              f"e2e {a}", f"e2e {b}", *[f"{label} AUROC clean / attacked" for label in OOD_SETS.values()], "sanity",
              "suite(s)"]
    rows = []
    for rank, r in enumerate(board.rows, 1):
        e = r.first

        def wc(x: str) -> str:
            n = r.numbers[f"worst_case_linf_{x}"]
            return _pct(n.value) + ("" if n.value is None or n.extra.get("n") is None else f" ({n.extra['n']})")

        rows.append([rank, f"`{r.display}`", e.defence, "yes" if e.randomized else "no", _pct(r.value("clean_accuracy")),
                     wc(a), wc(b), _pct(r.value(f"end_to_end_linf_{a}")), _pct(r.value(f"end_to_end_linf_{b}")),
                     *[f"{_pct(r.value(f'ood_auroc_{ds}_clean'))} / {_pct(r.value(f'ood_auroc_{ds}_linf_{o}'))}"
                       for ds in OOD_SETS],
                     f"**{UNRELIABLE}**" if r.unreliable else _verdict(r.unreliable), ", ".join(r.suites) or DASH])
    parts += [_md(header, rows), ""]
    if figure:
        parts += [f"![worst-case robust accuracy against L-inf eps per model]({FIGURE})", ""]

    parts += ["## Where each number comes from", ""]
    for r in board.rows:
        by_suite: dict[str, list[str]] = {}
        missing = []
        for k, n in r.numbers.items():
            if n.entry is not None:
                by_suite.setdefault(n.entry.run.suite, []).append(_describe(k, n))
            elif n.note and n.note != "no OOD rejector" and not k.startswith("end_to_end"):
                missing.append(f"{_short(k)} ({n.note})")
        bits = [f"from `{s}`: " + "; ".join(ks) for s, ks in sorted(by_suite.items())]
        bits += ["not measured: " + "; ".join(missing)] if missing else []
        flags = "; ".join(f"`{s}` raised {', '.join(f'`{f}`' for f in fl)}" for s, fl in sorted(r.flags.items()))
        parts.append(f"- `{r.display}`: " + ". ".join(bits) + "." + (f" **{UNRELIABLE}**: {flags}." if flags else ""))
    parts.append("")

    parts += ["## Runs", ""]
    for run in board.runs:
        parts += [f"### `{run.suite}`", "",
                  f"Command `{run.meta.get('command', 'unknown')}`, commit `{run.commit}`, {run.date}. "
                  f"Attacks from {run.attacks_from}.", ""]
        for eps in EPS_POINTS:
            labels = run.labels("linf", eps)
            if labels is None:
                ks = {int(v) for v in _rows_of(run.table, "worst_case_linf", eps, "mnist", "n_attacks").value.dropna()}
                what = (f"{'/'.join(map(str, sorted(ks)))} attacks, labels not recorded" if ks else "none")
            else:
                what = f"{_code_list(labels)} ({len(labels)})" if labels else "no L-inf attack at this eps"
                some = [f"`{lab}` only on {_code_list(run.attacks[lab]['models'])}" for lab in labels
                        if run.attacks[lab].get("models") is not None
                        and set(run.attacks[lab]["models"]) != set(run.table.model)]
                what += f"; {', '.join(some)}" if some else ""
            parts.append(f"- Worst case at L-inf eps {eps:g}: {what}.")
        parts += [f"- Caveat: {c}." for c in run.caveats]
        parts.append("")
    return "\n".join(parts)


def _series(board: Leaderboard) -> dict[str, list[tuple[float, float]]]:
    """Per model, worst-case L-inf accuracy against eps from the run that gives its 0.3 number (else its 0.1 one)."""
    series = {}
    for r in board.rows:
        src = r.numbers[f"worst_case_linf_{_eps_key(0.3)}"].entry or r.numbers[f"worst_case_linf_{_eps_key(0.1)}"].entry
        if src is None:
            continue
        rows = src.table[(src.table.attack == "worst_case_linf") & (src.table.dataset == "mnist")
                         & (src.table.metric == "accuracy") & src.table.value.notna()].sort_values("eps")
        if len(rows):
            series[r.display] = [(float(e), float(v)) for e, v in zip(rows.eps, rows.value)]
    return series


def summary_table(board: Leaderboard):
    from rich.table import Table

    a, b = (_eps_key(e) for e in EPS_POINTS)
    table = Table(title="Leaderboard: worst case per sample over each run's L-inf attacks, %")
    for col in ("#", "model", "clean", f"wc {a}", f"wc {b}", f"e2e {b}", "sanity"):
        table.add_column(col, justify="right" if col not in ("model", "sanity") else "left")
    for rank, r in enumerate(board.rows, 1):
        table.add_row(str(rank), r.display, _pct(r.value("clean_accuracy")), _pct(r.value(f"worst_case_linf_{a}")),
                      _pct(r.value(f"worst_case_linf_{b}")), _pct(r.value(f"end_to_end_linf_{b}")),
                      "[bold red]" + UNRELIABLE + "[/]" if r.unreliable else _verdict(r.unreliable))
    return table


def write_leaderboard(results_dir: str | Path) -> tuple[Leaderboard, list[Path]]:
    """Build the leaderboard and write its files into `results_dir`, all or none; return them."""
    results_dir = Path(results_dir)
    board = build(results_dir)
    series = _series(board)
    tmp = Path(tempfile.mkdtemp(prefix=".leaderboard.", dir=results_dir))
    try:
        names = list(FILES)
        if series:
            from .plots import worst_case_vs_eps

            worst_case_vs_eps(series, tmp / FIGURE, "Worst case over each run's L-inf attacks")
            if not (tmp / FIGURE).is_file():
                raise AttractorBenchError(f"the figure {FIGURE} was not written by attractor_bench.plots.worst_case_vs_eps.")
            names.append(FIGURE)
        (tmp / "LEADERBOARD.md").write_text(render_markdown(board, figure=bool(series)), encoding="utf-8")
        (tmp / "LEADERBOARD.csv").write_text(render_csv(board), encoding="utf-8")
        (tmp / "LEADERBOARD.json").write_text(render_json(board), encoding="utf-8")
        for name in names:
            os.replace(tmp / name, results_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return board, [results_dir / n for n in names]
