"""An OOD suite: which models (by reference to the suites that define them), which images, which
budgets. Read with the same strict YAML reader as the other suites (`suitefile.read`):

    models_from: [leaderboard.yaml, leaderboard_sota.yaml]   # beside this file; every model of each
    models: [attractor, mlp]          # optional: only these (default: all of them)
    n_test: 1000                      # MNIST test images (the in-distribution half)
    n_ood: 1000                       # images of each OOD set
    n_validation: 250                 # optional: images per set the best rejector is chosen on (default: n_ood / 4, at most 250)
    ood: [fashion_mnist, cifar10_bw, uniform_noise, smooth_noise]
    eps: [0.1]                        # L-inf budgets of the score attacks
    attacks: [pgd, apgd, square]      # score attacks, each in both directions
    k_plus_one: true                  # the K+1 cross-check on models with the attractor's rejector
    budgets: {square: {n_queries: 1000}}   # optional: overrides of attacks.BUDGETS (pgd, apgd, square, k_plus_one)
    seed: 0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from attractor_bench import schema, suitefile
from attractor_bench.config import Suite, load_suite
from attractor_bench.errors import ConfigError

VALIDATION_MAX = 250  # images per set for the best rejector's choice when the suite gives none: n_ood / 4, at most this

@dataclass(frozen=True)
class OODSuite:
    name: str
    suites: tuple[Suite, ...]  # the referenced suites, each with only the models evaluated here
    n_test: int
    n_ood: int
    ood: tuple[str, ...]
    eps: tuple[float, ...]
    attacks: tuple[str, ...]
    k_plus_one: bool
    seed: int
    budgets: dict  # attack -> overrides of attacks.BUDGETS
    n_validation: int = 250  # MNIST validation images and images of each OOD set, apart from the test images,
    # on which each model's best rejector is chosen (evaluate.validation_sets)

    @property
    def model_names(self) -> list[str]:
        return [m.name for s in self.suites for m in s.models]


def load_ood_suite(path: str | Path) -> OODSuite:
    """The OOD suite in file `path`: read by `suitefile`, its shape checked by `schema.OODSuiteDoc`,
    then its references to the other suites and their models, here."""
    path = Path(path)
    raw = suitefile.read(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: an OOD suite is a YAML mapping with at least 'models_from' (the suites whose models "
                          "it evaluates); see attractor_bench/ood/suite.py.")
    doc = schema.validate(schema.OODSuiteDoc, raw, path)
    suites, seen = [], {}
    for ref in doc.models_from:
        s = load_suite(path.parent / ref)
        for m in s.models:
            if m.name in seen:
                raise ConfigError(f"{path}: model {m.name!r} is in both {seen[m.name]} and {ref}; name each model once.")
            seen[m.name] = ref
        suites.append(s)
    if doc.models is not None:
        missing = [m for m in doc.models if m not in seen]
        if missing:
            raise schema.error(path, "models", f"names {', '.join(missing)}, which no suite of 'models_from' defines "
                                               f"(they define {', '.join(seen)}).")
        suites = [dataclasses.replace(s, models=tuple(m for m in s.models if m.name in doc.models)) for s in suites]
        suites = [s for s in suites if s.models]
    return OODSuite(schema.suite_name(doc.name, path), tuple(suites), doc.n_test, doc.n_ood, tuple(doc.ood), tuple(doc.eps),
                    tuple(doc.attacks), doc.k_plus_one, doc.seed, doc.budgets.given() if doc.budgets else {},
                    doc.n_validation or max(1, min(doc.n_ood // 4, VALIDATION_MAX)))
