"""The leaderboard's named, versioned protocol, as AutoAttack names `standard`: one evaluation
(images, seed, eps, attacks and their budgets, the cascade, the OOD sets and score attacks) under
one name and version, so that a ranked row means the same evaluation for every model.

The protocol is not a copy: its definition is the committed leaderboard suite
(`suites/leaderboard.yaml`, the classification part) and the OOD suite (`suites/ood.yaml`), parsed
by the same code as any run. Its fingerprint is derived from that parse and pinned here with the
version: `tests/test_protocol.py` fails when an edit to those suites changes the evaluation without a
new version (and the fingerprint it now has).

A model of a run satisfies the protocol when the run's evaluation of that model equals the
protocol's (`satisfied`): the same seed, worst-case mode, image counts, and the same attacks (label,
name, target, loss, transfer source's preset, subset, eps, OOD flag, parameters) among those that
apply to it. A model behind the attractor defence is compared with the protocol's attacks that need
a rejector included, any other model without them (`cells.applies`). The run.json of a run records
the protocol each model satisfied (`protocol`); the leaderboard recomputes it from run.json, so
that runs made before the protocol existed are judged by the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from .attacks import ATTACKS
from .cells import applies
from .config import Suite, load_suite
from .errors import ConfigError
from .files import key
from .ood.attacks import budgets
from .ood.suite import load_ood_suite

ROOT = Path(__file__).resolve().parents[1]  # the repository: the protocol's suites ship with a checkout
# The suites whose models are the leaderboard's (and the zoo's): their names resolve in `load_model`.
LEADERBOARD_SUITES = ("suites/leaderboard.yaml", "suites/leaderboard_attractor_at.yaml", "suites/leaderboard_sota.yaml")
_FIELDS = {"name": None, "target": "pipeline", "loss": "cross_entropy", "source": None, "n": None, "eps": [],
           "ood": True, "params": {}}


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int
    suite: str  # the classification suite that defines it (relative to the repository)
    ood_suite: str  # the OOD suite that defines its OOD part
    fingerprint: str  # `fingerprint(self)` when this version was named: what the version means

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


# v1: suites/leaderboard.yaml (1,000 test images, seed 0, cascade; FGSM, PGD, APGD-CE, standard
# AutoAttack, PGD-BPDA, transfer PGD from `mlp`, FGSM on the network, the rejection-aware attack)
# and suites/ood.yaml (four OOD sets of 1,000, PGD, APGD and Square on the score at L-inf 0.1).
PROTOCOL = Protocol("mnist-linf", 1, "suites/leaderboard.yaml", "suites/ood.yaml", "88101520109b2a5fe97a1293ae95064a")


def suite_meta(suite: Suite) -> dict:
    """The part of a run's run.json that `evaluation` reads (`runner._meta`, `n_images`, `seed`), from a suite."""
    images = {"mnist": suite.data.n_test, **{ds: suite.data.n_ood for ds in suite.data.ood}}
    attacks = {a.label: {"name": a.name, "target": a.target.value, "loss": a.loss, "source": a.source, "n": a.n,
                         "eps": list(a.eps), "ood": a.ood, "params": a.params,
                         "models": [m.name for m in suite.models if applies(a, m.defence.may_reject)]} for a in suite.attacks}
    return {"seed": suite.seed, "worst_case": suite.worst_case, "n_images": images, "attacks": attacks,
            "models": {m.name: {"preset": m.preset} for m in suite.models}}


def evaluation(meta: dict, labels: list[str]) -> dict:
    """The evaluation of a run (its run.json `meta`) restricted to the attacks `labels`: what two runs
    must share for their numbers to mean the same."""
    attacks = {}
    for label in sorted(labels):
        a = meta["attacks"][label]
        attacks[label] = {k: a.get(k, default) for k, default in _FIELDS.items()}
        attacks[label]["eps"] = [round(float(e), 9) for e in attacks[label]["eps"]]
        if a.get("source") is not None:  # the transfer source's kind (its training is the zoo's, by name)
            attacks[label]["source_preset"] = (meta.get("models", {}).get(a["source"]) or {}).get("preset")
    return {"seed": meta.get("seed"), "worst_case": meta.get("worst_case", "full"),
            "n_images": dict(sorted((meta.get("n_images") or {}).items())), "attacks": attacks}


def _rejector_attacks(meta: dict) -> set[str]:
    return {label for label, a in meta["attacks"].items() if a["name"] in ATTACKS and ATTACKS[a["name"]].needs_rejector}


def of_model(meta: dict, model: str) -> dict:
    """The evaluation a run gave `model`: the attacks that ran on it."""
    return evaluation(meta, [label for label, a in meta["attacks"].items() if model in a.get("models", [])])


@lru_cache(maxsize=4)
def _protocol_meta(p: Protocol) -> dict:
    path = ROOT / p.suite
    if not path.is_file():
        raise ConfigError(f"protocol {p.label} is defined by {path}, which is missing: the protocol needs a checkout "
                          "of the repository (git clone), not only the installed package.")
    return suite_meta(load_suite(path))


def expected(p: Protocol, rejector: bool) -> dict:
    """The protocol's evaluation of a model with (or without) a rejector."""
    meta = _protocol_meta(p)
    skip = set() if rejector else _rejector_attacks(meta)
    return evaluation(meta, [label for label in meta["attacks"] if label not in skip])


def ood_part(p: Protocol) -> dict:
    """The protocol's OOD evaluation: sets, image counts, budgets and score attacks of its OOD suite."""
    o = load_ood_suite(ROOT / p.ood_suite)
    return {"n_test": o.n_test, "n_ood": o.n_ood, "ood": list(o.ood), "eps": list(o.eps), "attacks": list(o.attacks),
            "k_plus_one": o.k_plus_one, "seed": o.seed, "budgets": o.budgets}


def ood_satisfied(meta: dict, p: Protocol = PROTOCOL) -> str | None:
    """`p.label` when the OOD run (its ood.json `meta`) made the protocol's OOD evaluation (`ood_part`: the same
    image counts, sets, eps, score attacks with their budgets, cross-check and seed), else None."""
    part = ood_part(p)
    want = {**part, "budgets": budgets(part["budgets"])}
    try:
        sets, n = list(meta["ood"]), meta["n_images"]
        made = {"n_test": n["mnist"], "n_ood": n[sets[0]] if sets else want["n_ood"], "ood": sets, "eps": list(meta["eps"]),
                "attacks": list(meta["attacks"]), "k_plus_one": meta["k_plus_one"], "seed": meta["seed"],
                "budgets": meta["budgets"]}
    except (KeyError, TypeError):  # another shape of ood.json
        return None
    return p.label if made == want and all(n[d] == want["n_ood"] for d in sets) else None


def fingerprint(p: Protocol) -> str:
    """The hash of everything the protocol fixes, derived from its suites as parsed."""
    return key(plain=expected(p, False), rejector=expected(p, True), ood=ood_part(p))


def satisfied(meta: dict, model: str, rejector: bool, p: Protocol = PROTOCOL) -> str | None:
    """`p.label` when the run (its run.json `meta`) evaluated `model` (with a rejector or without) as protocol `p` does, else None."""
    try:
        return p.label if of_model(meta, model) == expected(p, rejector) else None
    except (KeyError, TypeError, AttributeError, ConfigError):  # another shape of run.json, or no protocol suite here
        return None


def micro(p: Protocol, suite: str, ood_suite: str | None = None) -> Protocol:
    """Another protocol over the same rules (tests: a small suite as the protocol's definition)."""
    q = replace(p, name=f"{p.name}-micro", suite=suite, ood_suite=ood_suite or p.ood_suite, fingerprint="")
    return replace(q, fingerprint=fingerprint(q))


@lru_cache(maxsize=2)
def leaderboard_models(suites: tuple[str, ...] = LEADERBOARD_SUITES) -> dict[str, tuple[Suite, object]]:
    """Every leaderboard model name -> (its suite, its `ModelSpec`), the first suite that defines it winning
    (`mlp` is the same model in each)."""
    out = {}
    for rel in suites:
        suite = load_suite(ROOT / rel)
        for spec in suite.models:
            out.setdefault(spec.name, (suite, spec))
    return out
