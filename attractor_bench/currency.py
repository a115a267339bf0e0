"""Which numbers of a run are current: per component, not per run.

A run's summary (or OOD run's ood.json) holds numbers that depend on different components: every
number on the run-wide ones (`components.RUN_WIDE`: the cell, the metrics, the worst case and its robust flags, the
summary, the data), a model's numbers on its training, defence and rejector
(`components.for_model`), a worst case at (norm, eps) and the OOD AUROC under attack on the
attacks taken there (`attack.<name>`), the verdict on `verdict`. `current_run` returns the run
with the numbers whose components have a newer version now left out, and a line for each part
left out; the leaderboard then ranks what is left (a left-out number may come from another run).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from . import components
from .provenance import recorded, stale

NOT_CHECKED = {"potentially_unreliable": None, "reasons": [], "by_eps": [], "flags": {}}


def attack_names(summary_path: Path, doc: dict) -> dict[str, str]:
    """Each attack label's registry name: the summary's record, else its run.json's (older runs)."""
    if isinstance(doc.get("attack_names"), dict):
        return doc["attack_names"]
    try:
        attacks = json.loads((summary_path.parent / "run.json").read_text(encoding="utf-8")).get("attacks", {})
        return {label: a["name"] for label, a in attacks.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _model_components(m: dict) -> list[str]:
    """The components model record `m` used: as its run recorded them, else (a run from before that
    record) worked out from its preset and defence."""
    if m.get("components"):
        return m["components"]
    defence = (m.get("identity") or {}).get("defence") or {}
    return components.for_model(m.get("preset"), defence.get("name"), bool(m.get("has_rejector")),
                                defence_origin=defence.get("origin") or "built-in")


def _versions(doc: dict, carried: dict, now: dict[str, int], kind: str, wide: tuple) -> tuple[dict | None, str]:
    """(the component versions a run was made with, ""), or (None, why all of it is stale)."""
    used = recorded(doc, carried, kind)
    if used is None:
        return None, (f"made by other {'OOD ' if kind == 'ood' else ''}code than the current one: no recorded check "
                      f"links its code fingerprint {str(doc.get('code'))[:12]} to component versions")
    old = stale(used, now, wide)
    return (None, f"made with older versions of {', '.join(old)}") if old else (used, "")


def current_run(run: dict, carried: dict, now: dict[str, int]) -> tuple[dict | None, list[str]]:
    """(the run with its stale numbers left out, or None when all of them are; what was left out)."""
    used, why = _versions(run, carried, now, "code", components.RUN_WIDE)
    if used is None:
        return None, [why]
    run, notes, kept = copy.deepcopy(run), [], []
    names = run.get("attack_names") or {}
    for m in run["models"]:
        old = stale(used, now, _model_components(m))
        if old:
            notes.append(f"`{m['name']}`: trained or defended with older versions of {', '.join(old)}")
            continue
        old_attacks = {label for label, name in names.items() if stale(used, now, [components.attack_component(name)])}
        for w in [w for w in m["worst_case"] if old_attacks & set(w["attacks"])]:
            m["worst_case"].remove(w)
            notes.append(f"`{m['name']}` worst case {w['norm']} {w['eps']:g}: older versions of attacks "
                         + ", ".join(sorted(old_attacks & set(w["attacks"]))))
        for o in m["ood"]:
            o["attacked"] = [a for a in o["attacked"] if not old_attacks & set(a["attacks"])]
        if stale(used, now, ["verdict"]):
            m["verdict"] = dict(NOT_CHECKED)
            notes.append(f"`{m['name']}` verdict: an older version of the probes")
        kept.append(m)
    run["models"] = kept
    return run, notes


def current_ood(doc: dict, carried: dict, now: dict[str, int]) -> tuple[dict | None, list[str]]:
    """The OOD run with its stale models left out (None: all of it is stale), and what was left out."""
    used, why = _versions(doc, carried, now, "ood", components.OOD_WIDE)
    if used is None:
        return None, [why]
    doc, notes = copy.deepcopy(doc), []
    for name, info in list(doc["models"].items()):
        comps = info.get("components") or _model_components({**info, "has_rejector": (info.get("identity") or {})
                                                             .get("threshold") is not None})
        old = stale(used, now, comps)
        if old:
            del doc["models"][name]
            notes.append(f"`{name}`: older versions of {', '.join(old)}")
    return doc, notes

