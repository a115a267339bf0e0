"""ART evasion attacks, by name. A suite's `attacks[].name` picks one; tests iterate ATTACKS.

Each entry builds an ART attack for a classifier and an epsilon (L-inf, in [0, 1] pixel units)
plus the suite's `params` for that attack.

>>> attack = ATTACKS["fgsm"].build(classifier, eps=20 / 255)
>>> x_adv = attack.generate(x, y)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent


@dataclass(frozen=True)
class AttackEntry:
    factory: Callable[..., Any]
    art_class: type
    norm: str
    description: str
    defaults: dict
    fixed: frozenset = frozenset({"eps", "norm"})  # set by the suite grid / the entry, not by `params`
    extra: frozenset = frozenset()  # parameters of the factory itself

    def allowed_params(self) -> set[str]:
        """Keys a suite may give in `params`: the ART attack's own `attack_params`, less the fixed ones."""
        return (set(self.art_class.attack_params) - self.fixed) | set(self.extra)

    def build(self, classifier, eps: float, **params):
        return self.factory(classifier, eps=eps, **{**self.defaults, **params})


def _fgsm(classifier, eps: float, **kw):
    return FastGradientMethod(classifier, norm=np.inf, eps=eps, **kw)


def _pgd(classifier, eps: float, eps_step_ratio: float = 0.25, **kw):
    return ProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=eps * eps_step_ratio, **kw)


ATTACKS: dict[str, AttackEntry] = {
    "fgsm": AttackEntry(
        _fgsm, FastGradientMethod, "linf", "FGSM, ART FastGradientMethod (Goodfellow et al. 2015)", {"batch_size": 256},
    ),
    "pgd": AttackEntry(
        _pgd, ProjectedGradientDescent, "linf", "PGD L-inf, ART ProjectedGradientDescent (Madry et al. 2018)",
        {"batch_size": 256, "max_iter": 40, "num_random_init": 1, "verbose": False},
        fixed=frozenset({"eps", "norm", "eps_step"}), extra=frozenset({"eps_step_ratio"}),
    ),
}

__all__ = ["ATTACKS", "AttackEntry"]
