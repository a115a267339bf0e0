"""OOD rejection by the similarity between an input and its attractor (Eq. 6-7).

    D(x) = ID  if  Pearson(G^n(x), x) >= T   else OOD

with G^n the fixed-point iteration of `AttractorDefence`. T = 0.8 as in the paper, or calibrated
by `fit` so that a target share of held-out in-distribution images is accepted.
Follows ART's `EvasionDetector` interface: `detect(x) -> (report, is_ood)`.

>>> rejector = PearsonRejector(AttractorDefence(model), threshold=0.8)
>>> report, is_ood = rejector.detect(x_adv)
"""

from __future__ import annotations

import numpy as np
import torch
from art.defences.detector.evasion import EvasionDetector

from .attractor import AttractorDefence, check_images


def pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-sample Pearson correlation of flattened a, b (B, ...) -> (B,). A constant image has
    no defined correlation; it scores 0."""
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


class PearsonRejector(EvasionDetector):
    defence_params = ["threshold"]

    def __init__(self, defence: AttractorDefence, threshold: float = 0.8):
        super().__init__()
        self.defence = defence
        self.threshold = threshold
        self._check_params()

    def _check_params(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [-1, 1] (a correlation), got {self.threshold}.")

    def scores(self, x: np.ndarray | torch.Tensor, batch_size: int = 512) -> np.ndarray:
        """Pearson similarity between each input and its fixed point, (N,)."""
        xt = torch.as_tensor(x, dtype=torch.float32)
        check_images(xt, type(self).__name__)
        out = []
        with torch.no_grad():
            for start in range(0, len(xt), batch_size):
                xb = xt[start : start + batch_size].to(self.defence.device)
                out.append(pearson(self.defence.iterate(xb)[0], xb).cpu())
        return torch.cat(out).numpy()

    def fit(self, x: np.ndarray, y: np.ndarray | None = None, batch_size: int = 512, nb_epochs: int = 0,
            target_tpr: float = 0.95, **kwargs) -> "PearsonRejector":
        """Set T so that a share `target_tpr` of the in-distribution images `x` is accepted."""
        if not 0.0 < target_tpr <= 1.0:
            raise ValueError(f"target_tpr must lie in (0, 1], got {target_tpr}.")
        s = np.sort(self.scores(x, batch_size))
        n_reject = int(np.floor(len(s) * (1.0 - target_tpr) + 1e-9))  # reject at most this many
        self.threshold = float(s[min(n_reject, len(s) - 1)])
        return self

    def detect(self, x: np.ndarray, batch_size: int = 512, **kwargs) -> tuple[dict, np.ndarray]:
        s = self.scores(x, batch_size)
        return {"similarity": s, "threshold": self.threshold}, s < self.threshold
