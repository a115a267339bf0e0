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
    norm: str
    description: str
    defaults: dict

    def build(self, classifier, eps: float, **params):
        return self.factory(classifier, eps=eps, **{**self.defaults, **params})


def _fgsm(classifier, eps: float, **kw):
    return FastGradientMethod(classifier, norm=np.inf, eps=eps, **kw)


def _pgd(classifier, eps: float, eps_step_ratio: float = 0.25, **kw):
    return ProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=eps * eps_step_ratio, **kw)


ATTACKS: dict[str, AttackEntry] = {
    "fgsm": AttackEntry(_fgsm, "linf", "FGSM, ART FastGradientMethod (Goodfellow et al. 2015)", {"batch_size": 256}),
    "pgd": AttackEntry(
        _pgd, "linf", "PGD L-inf, ART ProjectedGradientDescent (Madry et al. 2018)",
        {"batch_size": 256, "max_iter": 40, "num_random_init": 1, "verbose": False},
    ),
}

__all__ = ["ATTACKS", "AttackEntry"]
