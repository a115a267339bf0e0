"""Rejectors for every model: a score per input (higher = more in-distribution), differentiable
through the whole defended pipeline, and the threshold at which an input is accepted. In the small
style of pytorch-ood's detectors (`MaxSoftmax`, `EnergyBased`), with the sign flipped to an ID
score:

- `msp`: the maximum softmax probability of the pipeline's logits (Hendrycks & Gimpel 2017);
- `energy`: the negative energy, logsumexp of the pipeline's logits (Liu et al. 2020, T = 1);
- `similarity`: Pearson(reconstruction(x), x), the attractor network's rejector (Eq. 6-7; the
  reconstruction is the fixed-point iteration G^n(x)), and the same rule for the purifiers: the
  reconstruction of APuDAE's and the feature-loss DAE's denoising autoencoder.

`rejectors_for(d, val_x)` gives a model's rejectors. Thresholds: the attractor's suite threshold
(T = 0.8, the paper's) for its similarity; for every other rejector, the threshold that accepts
95% of MNIST's validation images (`metrics.threshold_at_tpr`), so that no choice is made on the
test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from attractor_bench.attacks.autoattack_standard import Pipeline
from attractor_bench.cells import Defended, Target
from attractor_bench.defences import AttractorDefence, pearson

from .metrics import threshold_at_tpr

NAMES = {"similarity": "reconstruction similarity", "msp": "max softmax", "energy": "energy"}
TPR = 0.95  # the share of validation MNIST images a calibrated rejector accepts
BATCH = 500


@dataclass
class Rejector:
    name: str
    score: Callable[[torch.Tensor], torch.Tensor]  # (B, 1, 28, 28) -> (B,), differentiable
    threshold: float
    calibrated: bool  # the threshold was set on the validation split (else: the suite's)

    @torch.no_grad()
    def scores(self, x: np.ndarray) -> np.ndarray:
        dev = _device(self.score)
        return torch.cat([self.score(torch.as_tensor(x[i:i + BATCH], device=dev)).float().cpu()
                          for i in range(0, len(x), BATCH)]).numpy()


def _device(score) -> torch.device:
    return getattr(score, "device", torch.device("cpu"))


class _Score(torch.nn.Module):
    """A score as a module, so that attacks can move it and read its device."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device):
        super().__init__()
        self.fn, self.device = fn, device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def reconstruction(defence) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The defence's reconstruction of its input: the attractor's fixed point, a purifier's DAE; None
    for a defence without one."""
    if isinstance(defence, AttractorDefence):
        return lambda x: defence.iterate(x)[0]
    dae = getattr(defence, "dae", None)
    return dae if isinstance(dae, torch.nn.Module) else None


def rejectors_for(d: Defended, val_x: np.ndarray) -> list[Rejector]:
    """Every rejector of model `d`: similarity where its defence reconstructs, then msp and energy."""
    dev = next(d.model.parameters()).device
    pipeline = Pipeline(d.classifiers[Target.PIPELINE])
    out = []
    recon = reconstruction(d.defence)
    if recon is not None:
        out.append(("similarity", _Score(lambda x: pearson(recon(x), x), dev),
                    None if d.rejector is None else d.rejector.threshold))
    out.append(("msp", _Score(lambda x: torch.softmax(pipeline(x), 1).amax(1), dev), None))
    out.append(("energy", _Score(lambda x: torch.logsumexp(pipeline(x), 1), dev), None))
    rejectors = []
    for name, score, threshold in out:
        r = Rejector(name, score, 0.0 if threshold is None else float(threshold), threshold is None)
        if r.calibrated:
            r.threshold = threshold_at_tpr(r.scores(val_x), TPR)
        rejectors.append(r)
    return rejectors
