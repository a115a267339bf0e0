"""The attractor fixed-point defence (Alipour & SeyyedSalehi, Fig. 4-b, Eq. 6).

Feed the autoencoder's output back to its input, x_{k+1} = G(x_k), until the iterate stops
changing: max_i |x_{k+1} - x_k|_i < `tol` for that sample, or `max_iter` iterations. Samples that
converged are frozen while the rest go on, so a sample's result does not depend on its batch (the
few still moving are computed on at least `batch_invariance.MIN_ROWS` rows, where this CPU's
kernels give each row the same bits whatever the batch).
Iterates are clipped to the input domain [0, 1] (`clip=True`) since G's ReLU output is unbounded.

Defaults are the validated choice: ONE iteration (`max_iter=1`, `tol=1e-3`, clipped, unrolled
backward), the setting that kept the most clean and attacked accuracy on the MNIST validation
split (results/mnist_fgsm/ABLATION.md) and the one the full suites use (mnist_fgsm,
mnist_adaptive, leaderboard). Iterating to a fixed point (e.g. `max_iter=50`) sends almost every
image to one attractor: clean accuracy near chance and almost nothing accepted by the rejector.

What an attack's gradient sees (`backward`):
- `unrolled`: autograd through every iteration actually performed (the full pipeline);
- `bpda`: straight-through, d x_n / d x = I (Athalye et al. 2018, BPDA with the identity).

>>> defence = AttractorDefence(model)                 # one iteration x <- G(x)
>>> clf = make_classifier(model, defence=defence)     # an ART PyTorchClassifier
"""

from __future__ import annotations

import math
from enum import Enum

import torch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch

from attractor_bench.batch_invariance import padded_call


class Backward(str, Enum):
    UNROLLED = "unrolled"
    BPDA = "bpda"


def check_images(x: torch.Tensor, where: str) -> None:
    """Raise ValueError for inputs this project's models cannot take."""
    if x.ndim < 2 or math.prod(x.shape[1:]) != 784:
        raise ValueError(f"{where}: expected a batch of 28x28 images (N, 1, 28, 28) or (N, 784), got shape {tuple(x.shape)}.")
    if x.numel() == 0:
        return
    lo, hi = torch.aminmax(x.detach())  # one pass over the batch: NaN and Inf show in the extremes
    lo, hi = lo.item(), hi.item()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{where}: input contains NaN or Inf.")
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"{where}: pixel values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}].")


class AttractorDefence(PreprocessorPyTorch):
    """Fixed-point iteration x <- G(x) of the attractor network, as an ART PyTorch preprocessor."""

    params = ["tol", "max_iter", "backward", "clip"]

    def __init__(
        self,
        model: torch.nn.Module,
        tol: float = 1e-3,
        max_iter: int = 1,
        backward: str | Backward = Backward.UNROLLED,
        clip: bool = True,
        device_type: str = "cpu",
    ):
        super().__init__(device_type=device_type, is_fitted=True, apply_fit=False, apply_predict=True)
        if not callable(getattr(model, "reconstruct", None)):
            raise ValueError(f"AttractorDefence iterates an autoencoder: it needs a model with reconstruct(x) (an "
                             f"AttractorNet), got {type(model).__name__}. Use another defence for this model.")
        self.model = model
        # Run where the model lives, whatever device_type says (ART's numpy path uses self.device).
        if isinstance(model, torch.nn.Module):
            self._device = next(model.parameters(), torch.empty(0)).device
        self.tol = tol
        self.max_iter = max_iter
        self.backward = Backward(backward)
        self.clip = clip
        self._check_params()

    def _check_params(self) -> None:
        self.backward = Backward(self.backward)  # also after ART's set_params(backward="bpda")
        if not (isinstance(self.max_iter, int) and self.max_iter >= 0):
            raise ValueError("max_iter must be a non-negative integer.")
        if not self.tol > 0:
            raise ValueError("tol must be positive.")

    def iterate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, ...) -> (fixed point G^n(x) with x's shape, iterations per sample (B,) int).

        Differentiable (autograd follows the iterations performed). Computed in the model's dtype
        (ART's numpy path may hand in float64)."""
        params = self.model.parameters() if isinstance(self.model, torch.nn.Module) else iter(())
        x = x.to(next((p.dtype for p in params), x.dtype))
        shape = x.shape
        if not (torch.is_grad_enabled() and x.requires_grad):
            return self._iterate_no_grad(x)
        cur = x.reshape(shape[0], -1)  # (B, 784)
        n_iter = torch.zeros(shape[0], dtype=torch.long, device=x.device)
        active = torch.ones(shape[0], dtype=torch.bool, device=x.device)
        for k in range(self.max_iter):
            nxt = self.model.reconstruct(cur)
            if self.clip:
                nxt = nxt.clamp(0.0, 1.0)
            last = k + 1 == self.max_iter  # no convergence test after the last iteration
            step = None if last else (nxt - cur).abs().amax(1).detach()
            cur = nxt if k == 0 else torch.where(active[:, None], nxt, cur)  # every sample takes the first step
            n_iter = n_iter + active.long()
            if last:
                break
            active = active & (step >= self.tol)
            if not active.any():
                break
        return cur.reshape(shape), n_iter

    @torch.no_grad()
    def _iterate_no_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same iteration without autograd, computing G only on the samples still moving."""
        shape = x.shape
        out = x.reshape(shape[0], -1).clone()
        n_iter = torch.zeros(shape[0], dtype=torch.long, device=x.device)
        active = torch.arange(shape[0], device=x.device)
        for k in range(self.max_iter):
            cur = out[active]
            nxt = padded_call(self.model.reconstruct, cur)  # the few still moving: at least MIN_ROWS rows, same bits
            if self.clip:
                nxt = nxt.clamp(0.0, 1.0)
            out[active] = nxt
            n_iter[active] += 1
            if k + 1 == self.max_iter:
                break
            active = active[(nxt - cur).abs().amax(1) >= self.tol]
            if len(active) == 0:
                break
        return out.reshape(shape), n_iter

    def forward(self, x: torch.Tensor, y=None):
        check_images(x, type(self).__name__)
        if self.backward is Backward.BPDA:
            with torch.no_grad():
                fixed, _ = self.iterate(x)
            return x + (fixed - x).detach(), y  # value G^n(x), gradient identity
        return self.iterate(x)[0], y
