"""Evasion attacks, by name. A suite's `attacks[].name` picks one; tests iterate ATTACKS.

Each entry builds an attack object with `generate(x, y) -> x_adv` for an ART classifier, an
epsilon and the suite's `params` for that attack:

>>> attack = ATTACKS["pgd"].build(classifier, eps=0.1)
>>> x_adv = attack.generate(x, y)

What the runner needs to know about an entry:
- `norm`: `linf` or `l2`; eps is measured in that norm, in [0, 1] pixel units.
- `kind`: `gradient` (white-box: needs loss or class gradients), `score` (black-box: queries
  the probabilities), `decision` (black-box: queries the label only). The sanity flags compare
  kinds (a black-box attack beating every white-box one suggests masked gradients).
- `bounded`: the attack takes eps and stays inside the ball. Otherwise it is a
  minimal-perturbation attack (C&W, DeepFool, HopSkipJump, Boundary): it runs once, unbounded,
  and at each eps a sample counts as attacked only where its perturbation is within eps (the
  clean image is used elsewhere), the usual way to read such attacks at a budget.
- `single_step`: FGSM; the sanity flags expect iterative attacks to be at least as strong.
- `needs_rejector`: the attack also gets the suite's rejector (the rejection-aware attack).
- `uses_loss`: its gradients are the classifier's loss gradient (FGSM, BIM, PGD), so a suite's
  `loss: training` (the model's own training cost instead of cross-entropy) applies to it.

All attacks except the rejection-aware one and `autoattack_standard` are ART's own classes. Two
AutoAttacks, named for what they are:
- `autoattack_standard`: standard AutoAttack from its authors' code (`pyautoattack`, an optional
  extra): APGD-CE, APGD-T, FAB-T, Square with 5,000 queries, the version RobustBench and every
  published MNIST AutoAttack figure use (`rand`, with EoT, for randomized models);
- `autoattack_art`: ART's `AutoAttack` ensemble (APGD-CE, APGD-DLR, DeepFool, Square, untargeted,
  with the budgets below), not comparable with published AutoAttack numbers.
`RENAMED` maps the names of earlier versions to today's.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from art.attacks.evasion import (
    AutoAttack,
    AutoProjectedGradientDescent,
    BasicIterativeMethod,
    BoundaryAttack,
    CarliniL2Method,
    CarliniLInfMethod,
    DeepFool,
    FastGradientMethod,
    HopSkipJump,
    ProjectedGradientDescent,
    SquareAttack,
)

from art.estimators.classification import PyTorchClassifier

from .apgd_classifier import on_classifier
from .autoattack_standard import StandardAutoAttack
from .clamped_pgd import ClampedPGD
from .rejection_aware import RejectionAwarePGD

NORMS = {"linf": np.inf, "l2": 2}


@dataclass(frozen=True)
class AttackEntry:
    factory: Callable[..., Any]
    norm: str
    kind: str  # gradient | score | decision
    description: str
    defaults: dict = field(default_factory=dict)
    params: frozenset | None = frozenset()  # keys a suite may give in `params` (None: whatever the factory takes)
    bounded: bool = True
    single_step: bool = False
    needs_rejector: bool = False
    uses_loss: bool = False  # differentiates the classifier's loss (ART's loss_gradient): `loss: training` applies
    depends: tuple[str, ...] = ()  # modules (by name) besides the factory's own source that build the attack
    cost: float = 100.0  # about the passes per image at the default budget: a cascade runs cheap attacks first
    version: int = 1  # bump when the numbers this attack computes change (attractor_bench.components)
    fixed: dict = field(default_factory=dict)  # arguments of the factory the entry fixes (data, not closures)

    def allowed_params(self) -> set[str] | None:
        return None if self.params is None else set(self.params)

    @classmethod
    def from_callable(cls, factory: Callable[..., Any]) -> "AttackEntry":
        """An outside attack: `factory(classifier, eps, **params)` returns an object with
        `generate(x, y) -> x_adv`. Optional attributes of the factory describe it: `norm`
        ('linf' default, or 'l2'), `kind` ('gradient' default, 'score', 'decision'), `bounded`
        (True), `single_step` (False), `cost` (100: about its passes per image, the cascade's order). Its
        docstring's first line is its description."""
        if isinstance(factory, cls):
            return factory
        norm, kind = getattr(factory, "norm", "linf"), getattr(factory, "kind", "gradient")
        if norm not in NORMS or kind not in ("gradient", "score", "decision"):
            raise ValueError(f"attack {getattr(factory, '__name__', factory)!r}: norm must be one of {sorted(NORMS)} and kind "
                             f"one of gradient, score, decision; got norm={norm!r}, kind={kind!r}.")
        sig = inspect.signature(factory).parameters.values()
        params = None if any(p.kind is p.VAR_KEYWORD for p in sig) else frozenset(
            p.name for p in sig if p.name not in ("classifier", "clf", "eps", "rejector")
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        doc = ((factory.__doc__ or "").strip().splitlines() or [getattr(factory, "__name__", "outside attack")])[0]
        return cls(factory, norm, kind, doc, {}, params, bool(getattr(factory, "bounded", True)),
                   bool(getattr(factory, "single_step", False)), cost=float(getattr(factory, "cost", 100.0)))

    def build(self, classifier, eps: float, rejector=None, **params):
        """The attack for `classifier` at budget `eps` (ignored by minimal-perturbation attacks)."""
        kw = {**self.defaults, **params, **self.fixed}
        if self.needs_rejector:
            if rejector is None:
                raise ValueError("this attack needs the suite's rejector (rejector=...).")
            kw["rejector"] = rejector
        return self.factory(classifier, eps=eps, **kw)


def perturbation_norms(x_adv: np.ndarray, x: np.ndarray, norm: str) -> np.ndarray:
    """Per-sample size of x_adv - x in `norm` (N,)."""
    return np.linalg.norm((x_adv - x).reshape(len(x), -1).astype(np.float64), ord=NORMS[norm], axis=1)


def within_budget(x_adv: np.ndarray, x: np.ndarray, eps: float, norm: str) -> np.ndarray:
    """A minimal-perturbation attack read at budget eps: x_adv where its perturbation is at most
    eps, else the clean x (the attack failed at that budget)."""
    ok = perturbation_norms(x_adv, x, norm) <= eps * (1 + 1e-6)
    return np.where(ok.reshape((-1,) + (1,) * (x.ndim - 1)), x_adv, x)


def _art_params(cls, *exclude: str, extra: tuple[str, ...] = ()) -> frozenset:
    return frozenset((set(cls.attack_params) - {"eps", "norm", *exclude}) | set(extra))


def _fgsm(clf, eps, **kw):
    return FastGradientMethod(clf, norm=np.inf, eps=eps, **kw)


def _bim(clf, eps, eps_step_ratio=0.1, **kw):
    return BasicIterativeMethod(clf, eps=eps, eps_step=eps * eps_step_ratio, **kw)


def _pgd(clf, eps, norm, eps_step_ratio=0.25, **kw):
    cls = ProjectedGradientDescent
    if isinstance(clf, PyTorchClassifier) and clf.all_framework_preprocessing:  # what ART's PGD would pick
        cls = ClampedPGD
    return cls(clf, norm=NORMS[norm], eps=eps, eps_step=eps * eps_step_ratio, **kw)


def _apgd(clf, eps, loss_type, **kw):  # step size: 2 eps at the start, as in Croce & Hein (2020); APGD adapts it
    return on_classifier(AutoProjectedGradientDescent(clf, norm=np.inf, eps=eps, eps_step=2 * eps, loss_type=loss_type,
                                                       **kw), clf)


def _autoattack_standard(clf, eps, **kw):
    return StandardAutoAttack(clf, eps, **kw)


def _autoattack_art(clf, eps, apgd_max_iter=100, apgd_restarts=1, deepfool_max_iter=50, square_max_iter=1000,
                square_restarts=1, batch_size=256):
    """ART's AutoAttack with its default members (untargeted) and explicit budgets."""
    members = [
        on_classifier(AutoProjectedGradientDescent(clf, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=apgd_max_iter,
                                                    nb_random_init=apgd_restarts, batch_size=batch_size, loss_type=loss,
                                                    verbose=False), clf)
        for loss in ("cross_entropy", "difference_logits_ratio")
    ]
    members.append(DeepFool(clf, max_iter=deepfool_max_iter, epsilon=1e-3, nb_grads=10, batch_size=batch_size, verbose=False))
    members.append(SquareAttack(clf, norm=np.inf, eps=eps, max_iter=square_max_iter, p_init=0.8, nb_restarts=square_restarts,
                                batch_size=batch_size, verbose=False))
    return AutoAttack(clf, norm=np.inf, eps=eps, eps_step=2 * eps, attacks=members, batch_size=batch_size)


def _cw_l2(clf, eps, **kw):
    return CarliniL2Method(clf, **kw)


def _cw_linf(clf, eps, **kw):
    return CarliniLInfMethod(clf, **kw)


def _deepfool(clf, eps, **kw):
    return DeepFool(clf, **kw)


def _square(clf, eps, **kw):
    return SquareAttack(clf, norm=np.inf, eps=eps, **kw)


def _hopskipjump(clf, eps, **kw):
    return HopSkipJump(clf, norm=2, targeted=False, **kw)


def _boundary(clf, eps, **kw):
    return BoundaryAttack(clf, targeted=False, **kw)


def _rejection_aware(clf, eps, rejector, **kw):
    return RejectionAwarePGD(clf, rejector, eps=eps, **kw)


_QUIET = {"verbose": False}
# Batch of the attacks that differentiate the classifier's loss: a loss summed over images makes an
# image's gradient the same bits in any batch (attractor_bench.batch_invariance), so the batch is a
# speed setting; 1,000 keeps the matrix products near the machine's peak (docs/performance.md).
_LOSS_BATCH = 1000
_PGD_CODE = ("attractor_bench.attacks.clamped_pgd",)
_APGD_CODE = ("attractor_bench.attacks.apgd_classifier",)
ATTACKS: dict[str, AttackEntry] = {
    "fgsm": AttackEntry(
        _fgsm, "linf", "gradient", "FGSM, ART FastGradientMethod (Goodfellow et al. 2015)", {"batch_size": _LOSS_BATCH},
        _art_params(FastGradientMethod, "eps_step", "minimal", "num_random_init"), single_step=True,
        uses_loss=True, cost=1, version=2,  # 2: the classifier's summed loss (issue 38); batch 1000
    ),
    "bim": AttackEntry(
        _bim, "linf", "gradient", "BIM L-inf, ART BasicIterativeMethod (Kurakin et al. 2017), no random start",
        {"batch_size": _LOSS_BATCH, "max_iter": 20, **_QUIET}, _art_params(BasicIterativeMethod, "eps_step", extra=("eps_step_ratio",)),
        uses_loss=True, cost=20, version=2,  # 2: the classifier's summed loss (issue 38); batch 1000
    ),
    "pgd": AttackEntry(
        _pgd, "linf", "gradient", "PGD L-inf with random restarts, ART ProjectedGradientDescent (Madry et al. 2018)",
        {"batch_size": _LOSS_BATCH, "max_iter": 40, "num_random_init": 1, **_QUIET},
        _art_params(ProjectedGradientDescent, "eps_step", extra=("eps_step_ratio",)),
        depends=_PGD_CODE, uses_loss=True,
        cost=40, fixed={"norm": "linf"}, version=3,  # 2: summed loss, batch 1000; 3: no success-rate passes (same bits)
    ),
    "pgd_l2": AttackEntry(
        _pgd, "l2", "gradient", "PGD L2 with random restarts, ART ProjectedGradientDescent (Madry et al. 2018)",
        {"batch_size": _LOSS_BATCH, "max_iter": 40, "num_random_init": 1, **_QUIET},
        _art_params(ProjectedGradientDescent, "eps_step", extra=("eps_step_ratio",)),
        depends=_PGD_CODE, uses_loss=True,
        cost=40, fixed={"norm": "l2"}, version=3,  # 2: summed loss, batch 1000; 3: no success-rate passes (same bits)
    ),
    "apgd_ce": AttackEntry(
        _apgd, "linf", "gradient", "Auto-PGD L-inf, cross-entropy loss, ART AutoProjectedGradientDescent (Croce & Hein 2020)",
        {"batch_size": 256, "max_iter": 100, "nb_random_init": 1, **_QUIET},
        _art_params(AutoProjectedGradientDescent, "eps_step", "loss_type"), depends=_APGD_CODE,
        cost=100, fixed={"loss_type": "cross_entropy"}, version=2,  # 2: APGD's loss summed over images (issue 38)
    ),
    "apgd_dlr": AttackEntry(
        _apgd, "linf", "gradient", "Auto-PGD L-inf, DLR loss, ART AutoProjectedGradientDescent (Croce & Hein 2020)",
        {"batch_size": 256, "max_iter": 100, "nb_random_init": 1, **_QUIET},
        _art_params(AutoProjectedGradientDescent, "eps_step", "loss_type"), depends=_APGD_CODE,
        cost=100, fixed={"loss_type": "difference_logits_ratio"}, version=2,  # 2: APGD's loss summed (issue 38)
    ),
    "autoattack_standard": AttackEntry(
        _autoattack_standard, "linf", "gradient",
        "standard AutoAttack, the authors' code (pyautoattack): APGD-CE, APGD-T, FAB-T, Square 5,000 queries; version rand "
        "(APGD-CE, APGD-DLR with EoT) for randomized models. The one comparable with published AutoAttack figures",
        {}, frozenset({"version", "batch_size", "second_seed"}), depends=("attractor_bench.attacks.autoattack_standard",),
        cost=20000, version=4,  # 2: a second seed on the robust images where AutoAttack's later attacks still broke some
        # 3: the pipeline runs batches of fewer than 16 images as 16 rows (the same bits in any batch; issue 38)
        # 4 (issue 37): the warnings' texts, kept and never read, are no longer kept (the counts are the report)
    ),
    "autoattack_art": AttackEntry(
        _autoattack_art, "linf", "gradient",
        "ART's AutoAttack ensemble (APGD-CE, APGD-DLR, DeepFool, Square; untargeted, ART's budgets): not standard "
        "AutoAttack, not comparable with published AutoAttack figures",
        {}, frozenset({"apgd_max_iter", "apgd_restarts", "deepfool_max_iter", "square_max_iter", "square_restarts", "batch_size"}),
        depends=_APGD_CODE,
        cost=3000, version=2,  # 2: APGD's loss summed over images (issue 38)
    ),
    "cw_l2": AttackEntry(
        _cw_l2, "l2", "gradient", "Carlini-Wagner L2 (minimal perturbation), ART CarliniL2Method",
        {"batch_size": 256, "max_iter": 50, "binary_search_steps": 5, "learning_rate": 0.1, "initial_const": 1.0, **_QUIET},
        _art_params(CarliniL2Method, "targeted"), bounded=False,
        cost=250,
    ),
    "cw_linf": AttackEntry(
        _cw_linf, "linf", "gradient", "Carlini-Wagner L-inf (minimal perturbation), ART CarliniLInfMethod",
        {"batch_size": 1, "max_iter": 10, "decrease_factor": 0.5, "initial_const": 0.01, "largest_const": 20.0,
         "const_factor": 4.0, "learning_rate": 0.1, **_QUIET},
        _art_params(CarliniLInfMethod, "targeted"), bounded=False,
        cost=500,
    ),
    "deepfool": AttackEntry(
        _deepfool, "l2", "gradient", "DeepFool (minimal perturbation, L2), ART DeepFool (Moosavi-Dezfooli et al. 2016)",
        {"batch_size": 256, "max_iter": 50, "epsilon": 0.02, **_QUIET}, _art_params(DeepFool), bounded=False,
        cost=50,
    ),
    "square": AttackEntry(
        _square, "linf", "score", "Square Attack L-inf (score-based black box), ART SquareAttack (Andriushchenko et al. 2020)",
        {"batch_size": 256, "max_iter": 1000, "nb_restarts": 1, "p_init": 0.8, **_QUIET},
        _art_params(SquareAttack, "adv_criterion", "loss"),
        cost=1000,
    ),
    "hopskipjump": AttackEntry(
        _hopskipjump, "l2", "decision", "HopSkipJump L2 (decision-based black box, minimal perturbation), ART HopSkipJump",
        {"batch_size": 256, "max_iter": 20, "max_eval": 1000, "init_eval": 100, **_QUIET},
        _art_params(HopSkipJump, "targeted"), bounded=False,
        cost=20000,
    ),
    "boundary": AttackEntry(
        _boundary, "l2", "decision", "Boundary attack, untargeted (decision-based black box, minimal perturbation), ART BoundaryAttack",
        {"batch_size": 256, "max_iter": 200, "num_trial": 10, "sample_size": 10, **_QUIET},
        _art_params(BoundaryAttack, "targeted"), bounded=False,
        cost=20000,
    ),
    "rejection_aware": AttackEntry(
        _rejection_aware, "linf", "gradient",
        "Rejection-aware PGD L-inf through the unrolled iteration: on MNIST, misclassify while keeping the similarity "
        "above the threshold; on OOD sets, push the similarity above it (written for this defence)",
        {}, RejectionAwarePGD.attack_params_allowed, needs_rejector=True, depends=("attractor_bench.attacks.rejection_aware",),
        # 2: its forward and backward passes are counted (a cell's cost showed 0 / 0); same examples
        # 3 (issue 37): reads the similarity threshold T from the rejector interface (whose threshold is -T)
        cost=100, version=3,
    ),
}

RENAMED = {"autoattack": "autoattack_art (ART's ensemble; the authors' standard AutoAttack is autoattack_standard)"}

__all__ = ["ATTACKS", "RENAMED", "AttackEntry", "ClampedPGD", "NORMS", "RejectionAwarePGD", "perturbation_norms", "within_budget"]
