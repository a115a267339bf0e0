"""The goals the leaderboard sets models against, measured on a ranked board.

The goals are data (`goals.yaml`: the models, targets and texts of issue 16's state-of-the-art
reference and of issue 19's `attractor_at`); this module only measures them: `reference(board)`
gives the reference row's numbers against its published figure, `at_goals(board)` each
`attractor_at` row against its goals (LEADERBOARD.json's `attractor_at_goals`). The words around
them are in templates/leaderboard.md.j2.
"""

from __future__ import annotations

from importlib.resources import files

import yaml

from .leaderboard import Leaderboard, Number, Row, separated

_DATA = yaml.safe_load(files(__package__).joinpath("goals.yaml").read_text(encoding="utf-8"))
REFERENCE = {**_DATA["reference"], "what": _DATA["reference"]["what"].format(**_DATA["reference"])}
AT_GOALS = _DATA["attractor_at"]


def reference(board: Leaderboard) -> dict:
    """The state-of-the-art reference against its goal: the goal (`goal`), the row's name (`row`:
    None where no run has the model) and, where it has a worst case at the goal's eps, that number
    with its interval, n and attacks, the points it falls short by, its clean accuracy and n, and
    where the clean accuracy's interval lies against the clean goal (`clean_interval`)."""
    goal = REFERENCE
    r = next((r for r in board.rows if r.model["name"] == goal["model"]), None)
    if r is None:
        return {"goal": goal, "row": None}
    wc, clean = r.numbers[f"worst_case_{goal['eps']:g}"], r.numbers["clean"]
    if wc.value is None:
        return {"goal": goal, "row": r.display, "worst_case": None}
    lo, hi = wc.extra["interval"]
    return {"goal": goal, "row": r.display, "worst_case": wc.value, "low": lo, "high": hi, "n": wc.extra["n"],
            "attacks": wc.extra["attacks"], "short_by": goal["robust"] - 100 * wc.value, "clean": clean.value,
            "clean_n": clean.extra["n"], "clean_short_by": goal["clean"] - 100 * (clean.value or 0),
            "clean_interval": _against(clean, goal["clean"])}


def _against(n: Number, goal: float) -> dict | None:
    """The 95% interval of `n` in percent and where it lies against `goal` (above, below, around)."""
    iv = (n.extra or {}).get("interval")
    if not iv:
        return None
    lo, hi = 100 * iv[0], 100 * iv[1]
    return {"low": lo, "high": hi, "where": "above" if lo > goal else "below" if hi < goal else "around", "goal": goal}


def at_goals(board: Leaderboard) -> dict[str, list[dict]]:
    """Each `attractor_at` row (by preset: the recipe at any parameters) against issue 19's goals:
    per goal what it asks, the measured number, its 95% interval, whether it is met and by how many
    points it is missed ({} without such rows). A goal without a target is the reference model's
    same number (the PGD-trained MLP's worst case at L-inf 0.3, on the same images: `separated`,
    McNemar's exact test where both carry per-sample outcomes); the OOD goals read the
    classification run's AUROC of the similarity rejector under its attacks on the OOD images at
    L-inf 0.1 (per set, the worst of FGSM and the rejection-aware attack)."""
    ref = next((r for r in board.rows if r.model["name"] == AT_GOALS["reference"]), None)
    return {r.model["name"]: [_status(g, r, ref) for g in AT_GOALS["goals"]] for r in board.rows
            if r.model.get("preset") == AT_GOALS["preset"]}


def _status(goal: dict, r: Row, ref: Row | None) -> dict:
    number, target, compared = r.numbers[goal["number"]], goal.get("target"), {}
    if target is None:  # the reference's same number, and whether the two are separated
        other = ref.numbers[goal["number"]] if ref else Number(None)
        target = None if other.value is None else 100 * other.value
        compared = {"separated_from_reference": None if other.value is None or number.value is None
                    else separated(number, other)}
    value = None if number.value is None else 100 * number.value
    missed = None if value is None or target is None else round(max(0.0, target - value), 2)
    met = None if missed is None else missed == 0 and (compared.get("separated_from_reference") or 0) >= 0
    return {"goal": goal["goal"].format(target=goal.get("target"), reference=AT_GOALS["reference"]), "value": value,
            "interval": (number.extra or {}).get("interval"), "target": target, "met": met, "short_by": missed,
            **compared, "attack": (number.extra or {}).get("attack")}
