"""The one rejector interface, in the spirit of pytorch-ood's `Detector`, and its generic implementations.

A rejector scores each input with an **outlier score: higher means more OOD** (pytorch-ood's
convention, used everywhere in this package: the metrics of `metrics.py` read the same scores) and
accepts an input whose score is at most its `threshold`:

>>> rejector.fit(val_x)            # the threshold that accepts 95% of the in-distribution images val_x
>>> rejector.score(x)              # (N,) outlier scores, numpy in, numpy out, no gradients
>>> rejector(x_tensor)             # the same score as a differentiable torch function (attacks on the score)
>>> rejector.accept(x)             # (N,) bool: score <= threshold
>>> report, is_ood = rejector.detect(x)   # ART's EvasionDetector: is_ood = ~accept(x)

Implementations: `MaxSoftmax` (Hendrycks & Gimpel 2017: minus the highest softmax probability),
`Energy` (Liu et al. 2020, T = 1: minus logsumexp of the logits), both of a logits function, and
`ReconstructionSimilarity` (minus Pearson(reconstruction(x), x), the purifiers' denoising
autoencoders). The attractor's rejector (`defenses/ood.py`: `PearsonRejector`) is a
`ReconstructionSimilarity` with the fixed-point iteration as its reconstruction.

A model *has* a rejector when its defence brings one: a registered defence through the registry
`defenses.REJECTORS`, an outside defence through a `rejector()` method of the object its factory
returns (docs/plugins.md). The classification cells' end-to-end metrics and the OOD evaluation
both read it through this interface.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from art.defences.detector.evasion import EvasionDetector

from .metrics import threshold_at_tpr

TPR = 0.95  # the share of in-distribution validation images a fitted rejector accepts
BATCH = 500


def pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-sample Pearson correlation of flattened a, b (B, ...) -> (B,). A constant image has
    no defined correlation; it scores 0."""
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


class Rejector(torch.nn.Module, EvasionDetector):
    """The interface. A subclass defines `forward(x) -> (B,)` outlier scores, differentiable in x;
    it may set `threshold` (else `fit` sets it) and add per-image outputs a cell stores (`outputs`).
    Every rejector is also an ART `EvasionDetector` (`fit`, `detect`, `get_params`, `set_params`), so it
    drops into ART code that takes a detector."""

    name = "rejector"
    similarity = False  # its score is minus a Pearson similarity (the histograms of the paper's Figures 8 and 13)
    defence_params = ["threshold"]  # ART's EvasionDetector: what get_params / set_params read and write

    def __init__(self, threshold: float | None = None, device: torch.device | str = "cpu"):
        torch.nn.Module.__init__(self)
        self.threshold = threshold
        self.device = torch.device(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def score(self, x: np.ndarray | torch.Tensor, batch_size: int = BATCH) -> np.ndarray:
        """The outlier scores of images x (N, ...), (N,) float32."""
        xt = torch.as_tensor(x, dtype=torch.float32)
        return torch.cat([self(xt[i:i + batch_size].to(self.device)).float().cpu()
                          for i in range(0, len(xt), batch_size)]).numpy()

    def fit(self, x: np.ndarray, y: np.ndarray | None = None, batch_size: int = BATCH, nb_epochs: int = 0,
            target_tpr: float = TPR, **kwargs) -> "Rejector":
        """Set the threshold that accepts at least `target_tpr` of the in-distribution images x (ART's
        `fit` signature: the labels and epochs are not used, nothing is trained)."""
        if not 0.0 < target_tpr <= 1.0:
            raise ValueError(f"target_tpr must lie in (0, 1], got {target_tpr}.")
        self.threshold = threshold_at_tpr(self.score(x, batch_size), target_tpr)
        return self

    def detect(self, x: np.ndarray, batch_size: int = BATCH, **kwargs) -> tuple[dict, np.ndarray]:
        """ART's `EvasionDetector.detect`: `(report, is_ood)`, with the outlier scores and the threshold
        in the report; `is_ood` is the complement of `accept`."""
        if self.threshold is None:
            raise ValueError(f"rejector {self.name!r} has no threshold yet: fit it on in-distribution images.")
        s = self.score(x, batch_size)
        return {"score": s, "threshold": self.threshold}, ~(s <= self.threshold)

    def accept(self, x: np.ndarray) -> np.ndarray:
        """Which images the rejector accepts (score <= threshold)."""
        return ~self.detect(x)[1]

    def outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The per-image outputs a cell stores: `score`, and what an implementation adds (`score_single`,
        the score of a one-pass variant; `n_iter`, iterations). NaN / 0 where it has none."""
        n = len(x)
        return {"score": self.score(x), "score_single": np.full(n, np.nan, np.float32), "n_iter": np.zeros(n, np.int64)}

    @property
    def shown_threshold(self) -> float | None:
        """The threshold in the units its documentation states (a similarity's T for a similarity)."""
        return None if self.threshold is None else (-self.threshold if self.similarity else self.threshold)


class FromLogits(Rejector):
    """A score of a classifier's logits, `logits(x)` (the post-hoc detectors of pytorch-ood)."""

    def __init__(self, logits: Callable[[torch.Tensor], torch.Tensor], threshold=None, device="cpu"):
        super().__init__(threshold, device)
        self.logits = logits


class MaxSoftmax(FromLogits):
    """Minus the maximum softmax probability of `logits(x)` (pytorch-ood's `MaxSoftmax`)."""

    name = "msp"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.softmax(self.logits(x), 1).amax(1)


class Energy(FromLogits):
    """The energy -logsumexp(logits(x)) at temperature 1 (pytorch-ood's `EnergyBased`)."""

    name = "energy"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.logsumexp(self.logits(x), 1)


class ReconstructionSimilarity(Rejector):
    """Minus Pearson(reconstruction(x), x): an input far from its reconstruction is OOD."""

    name = "similarity"
    similarity = True

    def __init__(self, reconstruction: Callable[[torch.Tensor], torch.Tensor] | None = None, threshold=None, device="cpu"):
        super().__init__(threshold, device)
        self.reconstruction = reconstruction

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruction(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -pearson(self.reconstruct(x), x)
