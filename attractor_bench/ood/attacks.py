"""Attacks on a rejector's outlier score (`attractor_bench.rejectors`: higher = more OOD), through the
whole defended pipeline, in both directions:

- `reject`: in-distribution (MNIST) images pushed to a higher outlier score, to be rejected (the
  rejector as a denial of service: a robust classifier that rejects every attacked digit is not useful);
- `accept`: OOD images pushed to a lower outlier score, to be accepted.

Attacking both halves gives the *robust AUROC* (ID images attacked to be rejected, OOD images to be
accepted). The score becomes a two-logit model (`ScoreModel`: logit 0 minus logit 1 is the margin
the attacker drives down, the score's distance from a bound beyond every clean score, in units of
the clean scores' spread), so that standard attack code runs on it unchanged:

- `pgd`: ART's ProjectedGradientDescent (40 steps of eps/4, one random start), cross-entropy;
- `apgd`: Auto-PGD from AutoAttack's authors' code (`pyautoattack`, 100 iterations, CE), its
  highest-loss point (`attack_single_run`'s x_best);
- `square`: Square Attack from the same code (score-based black box, margin loss): it catches a
  score whose gradient is masked. The bound is never crossed at these budgets, so Square keeps
  every image in play for all its queries.

`k_plus_one`: Carlini & Wagner (2017)'s K+1 formulation of a detector, through ART's own
`DetectorClassifier` (the classifier's softmax and a detector output score - T: the extra class
wins exactly when the rejector rejects), attacked by signed-gradient steps on C&W's margin loss
from `DetectorClassifier.class_gradient`: an OOD image succeeds when it is accepted. A
cross-check of the project's rejection-aware attack (attractor_bench.attacks.rejection_aware).
"""

from __future__ import annotations

import numpy as np
import torch
from art.attacks.evasion import ProjectedGradientDescent
from art.estimators.classification import PyTorchClassifier
from art.estimators.classification.detector_classifier import DetectorClassifier

from .rejectors import BATCH, Rejector

SCORE_ATTACKS = ("pgd", "apgd", "square")
DIRECTIONS = ("reject", "accept")
BUDGETS = {"pgd": {"max_iter": 40, "eps_step_ratio": 0.25}, "apgd": {"n_iter": 100}, "square": {"n_queries": 1000},
           "k_plus_one": {"max_iter": 50, "eps_step_ratio": 0.1}}


def budgets(overrides: dict | None = None) -> dict[str, dict]:
    """Every score attack's and the K+1 cross-check's budget: `BUDGETS` with an OOD suite's `overrides` (attack ->
    parameters) over it. The one place the two are merged: the cells' keys, the attacks, ood.json and the
    protocol's check all read it."""
    return {a: {**b, **(overrides or {}).get(a, {})} for a, b in BUDGETS.items()}


class ScoreModel(torch.nn.Module):
    """Logits (margin, 0) with margin = (bound - score) / spread going `reject`, (score - bound) /
    spread going `accept` (score: the outlier score); the label is always 0, so an untargeted attack
    lowers the margin."""

    def __init__(self, rejector: Rejector, direction: str, bound: float, spread: float):
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        self.score, self.sign, self.bound, self.spread = rejector, -1.0 if direction == "reject" else 1.0, bound, spread

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        margin = self.sign * (self.score(x) - self.bound) / self.spread
        return torch.stack([margin, torch.zeros_like(margin)], 1)


def bounds(clean: np.ndarray, direction: str) -> tuple[float, float]:
    """(bound, spread) for a direction from the clean outlier scores of every image the rejector
    scores: one spread above the highest (reject), below the lowest (accept)."""
    spread = float(np.ptp(clean)) or 1.0
    return (float(clean.max()) + spread if direction == "reject" else float(clean.min()) - spread), spread


def _batches(x: np.ndarray):
    for i in range(0, len(x), BATCH):
        yield x[i:i + BATCH]


def score_attack(name: str, rejector: Rejector, x: np.ndarray, eps: float, direction: str, clean_all: np.ndarray,
                 seed: int, budget: dict | None = None) -> np.ndarray:
    """Images x attacked by `name` on `rejector`'s score in `direction` within the L-inf eps-ball;
    `budget` overrides `BUDGETS[name]` (`budgets`)."""
    if name not in SCORE_ATTACKS:
        raise ValueError(f"unknown score attack {name!r}; known: {', '.join(SCORE_ATTACKS)}")
    b = budgets({name: budget or {}})[name]
    model = ScoreModel(rejector, direction, *bounds(clean_all, direction))
    dev = rejector.device
    y = np.zeros(len(x), np.int64)
    torch.manual_seed(seed)
    np.random.seed(seed)
    if name == "pgd":
        clf = PyTorchClassifier(model, torch.nn.CrossEntropyLoss(reduction="sum"), input_shape=x.shape[1:], nb_classes=2,
                                clip_values=(0.0, 1.0), device_type="gpu" if dev.type == "cuda" else "cpu")
        attack = ProjectedGradientDescent(clf, eps=eps, eps_step=eps * b["eps_step_ratio"], max_iter=b["max_iter"],
                                          num_random_init=1, batch_size=BATCH, verbose=False)
        return attack.generate(x, y).astype(np.float32)
    from pyautoattack.autopgd_base import APGDAttack
    from pyautoattack.square import SquareAttack
    out = []
    for xb in _batches(x):
        xt, yt = torch.as_tensor(xb, device=dev), torch.zeros(len(xb), dtype=torch.long, device=dev)
        if name == "apgd":
            a = APGDAttack(model, n_iter=b["n_iter"], norm="Linf", eps=eps, loss="ce", seed=seed, device=dev)
            a.init_hyperparam(xt)
            adv = a.attack_single_run(xt, yt)[0]
        else:
            a = SquareAttack(model, norm="Linf", n_queries=b["n_queries"], eps=eps, p_init=0.8,
                             loss="margin", seed=seed, device=dev)
            a.init_hyperparam(xt)
            with torch.no_grad():
                adv = a.attack_single_run(xt, yt)[1]
        out.append(adv.detach().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


class _Softmax(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return torch.softmax(self.logits(x), 1)


class _Detector(torch.nn.Module):
    """score - T: positive where the rejector rejects."""

    def __init__(self, rejector: Rejector):
        super().__init__()
        self.rejector = rejector

    def forward(self, x):
        return (self.rejector(x) - self.rejector.threshold)[:, None]


def k_plus_one(logits: torch.nn.Module, rejector: Rejector, x: np.ndarray, eps: float, budget: dict | None = None) -> np.ndarray:
    """OOD images x attacked through ART's DetectorClassifier (K+1 classes, the last one `rejected`) to
    be accepted: signed steps on C&W's margin max_{j<K} z_j - z_K; each image's first accepted
    iterate is kept (the last one where none is)."""
    dev = rejector.device
    kw = dict(loss=torch.nn.CrossEntropyLoss(), input_shape=x.shape[1:], clip_values=(0.0, 1.0),
              device_type="gpu" if dev.type == "cuda" else "cpu")
    clf = PyTorchClassifier(_Softmax(logits), nb_classes=10, **kw)
    # one output column, as DetectorClassifier reads it; nb_classes 2 only because PyTorchClassifier refuses 1
    det = PyTorchClassifier(_Detector(rejector), nb_classes=2, **kw)
    k1 = DetectorClassifier(clf, det)
    K = k1.nb_classes - 1
    b = budgets({"k_plus_one": budget or {}})["k_plus_one"]
    step = eps * b["eps_step_ratio"]
    x0 = x.astype(np.float32)
    xa, kept = x0.copy(), x0.copy()
    found = np.zeros(len(x0), bool)
    for it in range(b["max_iter"] + 1):
        z = k1.predict(xa, batch_size=BATCH)
        accepted = z.argmax(1) != K
        new = accepted & ~found
        kept[new], found = xa[new], found | accepted
        if it == b["max_iter"] or found.all():
            break
        todo = np.flatnonzero(~found)
        j = z[todo, :K].argmax(1)
        grad = -k1.class_gradient(xa[todo], label=K)[:, 0]
        for c in np.unique(j):
            rows = todo[j == c]
            grad[j == c] += k1.class_gradient(xa[rows], label=int(c))[:, 0]
        xa[todo] = np.clip(np.clip(xa[todo] + step * np.sign(grad), x0[todo] - eps, x0[todo] + eps), 0.0, 1.0)
    return np.where(found[:, None, None, None], kept, xa).astype(np.float32)
