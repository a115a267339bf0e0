"""The attractor network's OOD rejector: the similarity between an input and its attractor (Eq. 6-7).

    D(x) = ID  if  Pearson(G^n(x), x) >= T   else OOD

with G^n the fixed-point iteration of `AttractorDefence`; T = 0.8 as in the paper (the suite's
`rejector.threshold`), or fitted so that a target share of held-out in-distribution images is
accepted. An implementation of the rejector interface (`attractor_bench.rejectors`): its outlier
score is -Pearson(G^n(x), x), so its `threshold` is -T (`similarity_threshold` gives T back).
Besides the score, a cell stores its single-pass score -Pearson(G(x), x) and the iterations.

>>> rejector = PearsonRejector(AttractorDefence(model), similarity=0.8)
>>> rejector.accept(x_adv)
"""

from __future__ import annotations

import numpy as np
import torch

from attractor_bench.rejectors import ReconstructionSimilarity, pearson

from .attractor import AttractorDefence, check_images


class PearsonRejector(ReconstructionSimilarity):
    def __init__(self, defence: AttractorDefence, similarity: float | None = 0.8):
        if similarity is not None and not -1.0 <= similarity <= 1.0:
            raise ValueError(f"the similarity threshold must lie in [-1, 1] (a correlation), got {similarity}.")
        super().__init__(None, None if similarity is None else -float(similarity), defence.device)
        self.defence = defence

    @property
    def similarity_threshold(self) -> float | None:
        """T: an input is accepted when Pearson(G^n(x), x) >= T."""
        return self.shown_threshold

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.defence.iterate(x)[0]

    def score(self, x: np.ndarray | torch.Tensor, batch_size: int = 500) -> np.ndarray:
        check_images(torch.as_tensor(x, dtype=torch.float32), type(self).__name__)
        return super().score(x, batch_size)

    @torch.no_grad()
    def outputs(self, x: np.ndarray, batch_size: int = 1000) -> dict[str, np.ndarray]:
        """Per image: the score, the single-pass score -Pearson(G(x), x) and the iterations run."""
        xt = torch.as_tensor(x, dtype=torch.float32)
        check_images(xt, type(self).__name__)
        out = {k: [] for k in ("score", "score_single", "n_iter")}
        for start in range(0, len(xt), batch_size):
            xb = xt[start:start + batch_size].to(self.device)
            fixed, n_iter = self.defence.iterate(xb)
            recon = self.defence.model.reconstruct(xb)
            out["score"].append(-pearson(fixed, xb))
            out["score_single"].append(-pearson(recon.clamp(0, 1) if self.defence.clip else recon, xb))
            out["n_iter"].append(n_iter)
        return {k: torch.cat(v).cpu().numpy() for k, v in out.items()}
