"""Rejection-aware PGD: an adaptive L-inf attack on the attractor defence together with its OOD
rejector (Carlini & Wagner 2017's recipe for detectors: put the detector in the loss).

With labels (in-distribution images) it looks for x' in the eps-ball that is misclassified
*and* accepted, Pearson(G^n(x'), x') >= T:

    maximise  min(max_{j != y} z_j - z_y, kappa) - c * relu(T + margin - Pearson(G^n(x'), x'))

where z are the head's logits at the fixed point G^n(x'). Without labels (OOD images) it pushes
the similarity above the threshold so the image is accepted:

    maximise  Pearson(G^n(x'), x')

Gradients go through the unrolled iteration (`AttractorDefence.iterate`, the same number of
iterations and the same clipping as at test time). Each step is a signed-gradient step of size
`eps_step_ratio * eps`, projected to the eps-ball and [0, 1]. A sample's first iterate that
succeeds (misclassified and accepted; or accepted) is kept; samples that never succeed return
the last iterate. `num_random_init` > 0 restarts from uniform points in the ball for samples
that have not succeeded yet.

Its cost is counted on the classifier it is given (`CheckedClassifier.count`, as the cell reads
an attack's cost): each iterate's objective is one forward pass per image through the pipeline,
each gradient one backward pass per image (the attack runs the rejector's defence itself, so the
classifier's own counters would otherwise stay at 0 / 0).
"""

from __future__ import annotations

import numpy as np
import torch

from attractor_bench.rejectors import pearson


class RejectionAwarePGD:
    attack_params_allowed = frozenset({"eps_step_ratio", "max_iter", "margin", "kappa", "c", "num_random_init", "batch_size"})

    def __init__(self, classifier, rejector, eps: float, eps_step_ratio: float = 0.1, max_iter: int = 50,
                 margin: float = 0.02, kappa: float = 5.0, c: float = 10.0, num_random_init: int = 0,
                 batch_size: int = 256):
        if not eps >= 0:
            raise ValueError(f"eps must be non-negative, got {eps}.")
        if not (isinstance(max_iter, int) and max_iter >= 1):
            raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}.")
        if not hasattr(getattr(rejector, "defence", None), "iterate"):
            raise ValueError("rejection_aware attacks the rejector of a fixed-point defence (the attractor's "
                             f"PearsonRejector); this model's rejector is a {type(rejector).__name__}.")
        self.classifier = classifier  # the defended classifier (for callers); gradients use the rejector's defence
        self.rejector = rejector
        self.eps, self.eps_step = eps, eps * eps_step_ratio
        self.max_iter, self.margin, self.kappa, self.c = max_iter, margin, kappa, c
        self.num_random_init, self.batch_size = num_random_init, batch_size

    def _objective(self, xa: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-sample objective to maximise, per-sample success) at xa."""
        defence = self.rejector.defence
        fixed, _ = defence.iterate(xa)
        sim = pearson(fixed, xa)
        accepted = sim >= self.rejector.similarity_threshold
        if y is None:
            return sim, accepted
        z = defence.model(fixed)
        z_true = z.gather(1, y[:, None])[:, 0]
        z_other = z.scatter(1, y[:, None], float("-inf")).amax(1)
        gap = (z_other - z_true).clamp(max=self.kappa)
        penalty = torch.relu(self.rejector.similarity_threshold + self.margin - sim)
        return gap - self.c * penalty, accepted & (z.argmax(1) != y)

    def _count(self, forward: int, backward: int) -> None:
        """Count images passed forward and backward on the classifier (one that does not count: nothing)."""
        count = getattr(self.classifier, "count", None)
        if callable(count):
            count(forward=forward, backward=backward)

    def _batch(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        best = x.clone()
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for restart in range(max(1, self.num_random_init)):
            todo = ~done
            if not todo.any():
                break
            x0, yt = x[todo], (y[todo] if y is not None else None)
            delta = torch.zeros_like(x0)
            if self.num_random_init > 0:
                delta = (torch.rand_like(x0) * 2 - 1) * self.eps
            xa = (x0 + delta).clamp(0, 1)
            found = torch.zeros(len(x0), dtype=torch.bool, device=x.device)
            kept = xa.clone()
            for step in range(self.max_iter + 1):
                xa = xa.detach().requires_grad_(True)
                with torch.enable_grad():
                    objective, success = self._objective(xa, yt)
                    grad = torch.autograd.grad(objective.sum(), xa)[0] if step < self.max_iter else None
                self._count(len(xa), 0 if grad is None else len(xa))
                new = success & ~found
                kept[new] = xa.detach()[new]
                found |= success
                if grad is None or found.all():
                    break
                xa = xa.detach() + self.eps_step * grad.sign()
                xa = torch.min(torch.max(xa, x0 - self.eps), x0 + self.eps).clamp(0, 1)
            last = torch.where(found.view(-1, *[1] * (x0.ndim - 1)), kept, xa.detach())
            idx = todo.nonzero()[:, 0]
            best[idx] = last
            done[idx] = found
        return best

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> np.ndarray:
        """Adversarial x' (same shape as x). `y`: class indices or one-hot of in-distribution
        images; None means the images are OOD and the goal is to be accepted."""
        device = self.rejector.defence.device
        if y is not None:
            y = np.asarray(y)
            y = y.argmax(1) if y.ndim == 2 else y
        out = []
        for start in range(0, len(x), self.batch_size):
            xb = torch.as_tensor(x[start : start + self.batch_size], dtype=torch.float32, device=device)
            yb = torch.as_tensor(y[start : start + self.batch_size], dtype=torch.long, device=device) if y is not None else None
            out.append(self._batch(xb, yb).cpu().numpy())
        return np.concatenate(out).astype(np.float32)
