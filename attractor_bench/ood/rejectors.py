"""The rejectors an OOD run evaluates for a model (implementations of `attractor_bench.rejectors`):

- the model's own rejector where its defence brings one (the attractor's similarity), at the
  suite's threshold;
- `similarity`, Pearson(reconstruction(x), x), where the defence has a denoising autoencoder
  (`dae`: APuDAE, the feature-loss DAE) and no rejector of its own by that name;
- `msp` and `energy` of the defended pipeline's logits, for every model.

The rejectors without a threshold of their own are fitted on MNIST's validation split (95% of it
accepted: `Rejector.fit`), so that no choice is made on the test set.
"""

from __future__ import annotations

import numpy as np
import torch

from attractor_bench.attacks.autoattack_standard import Pipeline
from attractor_bench.cells import Defended, Target
from attractor_bench.rejectors import BATCH, TPR, Energy, MaxSoftmax, ReconstructionSimilarity, Rejector

__all__ = ["BATCH", "TPR", "Rejector", "reconstruction", "rejectors_for"]


def reconstruction(defence) -> torch.nn.Module | None:
    """A purifier's denoising autoencoder (its reconstruction of the input); None for a defence without one."""
    dae = getattr(defence, "dae", None)
    return dae if isinstance(dae, torch.nn.Module) else None


def rejectors_for(d: Defended, val_x: np.ndarray | None) -> list[Rejector]:
    """Every rejector of model `d` (see the module docstring), each with its threshold: its own, or fitted on
    `val_x` (None: not fitted, enough to name and key its cells)."""
    dev = next(d.model.parameters()).device
    pipeline = Pipeline(d.classifiers[Target.PIPELINE])
    own = [] if d.rejector is None else [d.rejector]
    recon = reconstruction(d.defence)
    others = [ReconstructionSimilarity(recon, device=dev)] if recon is not None else []
    others += [MaxSoftmax(pipeline, device=dev), Energy(pipeline, device=dev)]
    taken = {r.name for r in own}
    return fit_thresholds(d, own + [r for r in others if r.name not in taken], val_x)


def fit_thresholds(d: Defended, rejectors: list[Rejector], val_x: np.ndarray | None) -> list[Rejector]:
    """`rejectors` (model `d`'s, from `rejectors_for`), each but the model's own (which has the suite's threshold)
    fitted on `val_x` in place, at `TPR`; None: left as they are."""
    if val_x is not None:
        for r in rejectors:
            if r is not d.rejector:
                r.fit(val_x, TPR)
    return rejectors
