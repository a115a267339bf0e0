"""The records a leaderboard is made of: the `summary.json` of each run under a results folder
(`summary.py` writes them) and the OOD runs' `ood.json` (`ood/report.py`), read as untrusted
files (one clear error for a broken one, before anything is written) and split by the code that
made them: current (by its components, or by a recorded check: `provenance.py`) or stale.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import components, protocol
from .currency import attack_names, current_ood, current_run
from .errors import AttractorBenchError, ConfigError
from .ood.report import META as OOD_FILE
from .provenance import read_carried, same_chain
from .summary import FILE, FORMAT

_MODEL_KEYS = ("name", "identity", "randomized", "has_rejector", "clean", "worst_case", "ood", "verdict")


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
        _protocols(path, doc)
    if not (isinstance(doc, dict) and doc.get("format") == FORMAT and isinstance(doc.get("suite"), str)
            and isinstance(doc.get("models"), list)
            and all(isinstance(m, dict) and all(k in m for k in _MODEL_KEYS) for m in doc["models"])):
        raise AttractorBenchError(f"{path}: not a summary of format {FORMAT} (an object with suite, date, commit and models, "
                                  f"each with {', '.join(_MODEL_KEYS)}); {fix}.")
    return doc


def _protocols(path: Path, doc: dict) -> None:
    """Each model's `protocol` (the current protocol's label where its run.json evaluated it so, else None)
    and `components` (the components its run.json says it used: training, defence, rejector; None where
    the run predates that record)."""
    try:
        meta = json.loads((path.parent / "run.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        meta = None
    models = meta.get("models") if isinstance(meta, dict) and isinstance(meta.get("models"), dict) else {}
    for m in doc.get("models") if isinstance(doc.get("models"), list) else []:
        if isinstance(m, dict):
            m["protocol"] = (protocol.satisfied(meta, m.get("name"), bool(m.get("has_rejector")))
                             if isinstance(meta, dict) else None)
            used = (models.get(m.get("name")) or {}).get("components")
            m["components"] = used if isinstance(used, list) and all(isinstance(c, str) for c in used) else None


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


def current_runs(results_dir: Path) -> tuple[list[dict], list[dict], list[str]]:
    """(runs, stale, pending): the summaries of the current code (each with its `lineage`: the
    recorded checks that carry an earlier code's run over, or None), those of other code or an
    older format (each with why, as `stale`), and the folders with results.csv but no summary.json."""
    read, pending = read_summaries(results_dir)
    carried, now, runs, stale = read_carried(results_dir), components.current(), [], []
    for r in read:
        kept, notes = (None, [r["stale"]]) if r.get("stale") else current_run(r, carried, now)
        if kept is None:
            stale.append({**r, "stale": "; ".join(notes)})
            continue
        kept["lineage"] = None if "components" in r else same_chain(r.get("code"), carried["checks"])
        runs.append(kept)
        stale += [{**r, "stale": "; ".join(notes)}] if notes else []
    return runs, stale, pending
