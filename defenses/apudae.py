"""APuDAE (related paper `../shared/seeds/004`: Kalaria, Hazra & Chakrabarti 2022, "Towards
Adversarial Purification using Denoising AutoEncoders"): a denoising autoencoder purifies the
input of an unchanged classifier, used *adaptively* rather than by replacing the input with its
reconstruction.

What the text gives: a DAE trained to remove noise purifies adversarial inputs before the target
classifier; using it adaptively beats using it directly and resists attacks designed against
it. What it leaves open, and what is chosen here (`APuDAE`):
- the DAE: `defenses.dae.DAE` trained on Gaussian noise (std `noise_std`, 0.3 by default) to
  give back the clean image, mean squared error;
- "adaptively": the input is moved towards images the DAE reconstructs well, only as far as
  needed. Its reconstruction error r(x) = mean (DAE(x) - x)^2 is compared with `tau`, the
  `quantile` (95%) of r over clean validation images: a sample with r <= tau is left as it is
  (clean images keep the classifier's accuracy); the others take signed gradient steps
  x <- x - step_size * sign(grad r(x)), within `radius` (L-inf, 0.3) of the input and [0, 1], at
  most `steps` (10) steps of `step_size` (0.03), each sample stopping once r <= tau. The
  classifier sees the purified x, not DAE(x). `mode: direct` is the non-adaptive use for
  comparison: the classifier sees DAE(x);
- the classifier: any suite model (the suite uses the undefended `mlp`).

Gradients: the adaptive steps are sign steps, whose derivative is zero, so the purifier passes
gradients straight through (the identity; BPDA, Athalye et al. 2018): white-box attacks on the
`pipeline` target see the classifier's gradient at the purified point. In `direct` mode gradients
go through the DAE exactly.
"""

from __future__ import annotations

import torch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch

from attractor_bench.recipes import Recipe

from .attractor import check_images
from .dae import DAE, fit_denoiser, gaussian


def make_dae(**_) -> DAE:
    return DAE()


def fit_gaussian_dae(model: DAE, ctx, noise_std: float, max_epochs: int, patience: int, n_train: int | None) -> dict:
    return fit_denoiser(model, ctx, lambda x, y, gen: gaussian(x, noise_std, gen),
                        lambda out, x: torch.nn.functional.mse_loss(out, x), max_epochs, patience, name="apudae DAE",
                        n_train=n_train)


DAE_RECIPE = Recipe("apudae_dae", make_dae, fit_gaussian_dae, "APuDAE's denoiser (Gaussian noise)",
                    {"noise_std": 0.3, "max_epochs": 10, "patience": 2, "n_train": None},
                    depends=("attractor_bench.defenses.dae", "attractor_bench.early_stopping"))


def reconstruction_error(dae: DAE, x: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error between x and DAE(x)."""
    return (dae(x) - x).flatten(1).pow(2).mean(1)


class APuDAE(PreprocessorPyTorch):
    def __init__(self, dae: DAE, tau: float, steps: int = 10, step_size: float = 0.03, radius: float = 0.3,
                 mode: str = "adaptive", device_type: str = "cpu"):
        super().__init__(device_type=device_type, is_fitted=True, apply_fit=False, apply_predict=True)
        if mode not in ("adaptive", "direct"):
            raise ValueError(f"mode must be 'adaptive' or 'direct', got {mode!r}.")
        self.dae, self.tau, self.steps, self.step_size, self.radius, self.mode = dae.eval(), tau, steps, step_size, radius, mode
        for p in self.dae.parameters():
            p.requires_grad_(False)
        self.networks = (self.dae,)  # trained parts: their weights identify the defence in the cell store

    @torch.no_grad()
    def purify(self, x: torch.Tensor) -> torch.Tensor:
        """The adaptive purification (no gradient)."""
        xa = x.clone()
        for _ in range(self.steps):
            with torch.enable_grad():
                xg = xa.detach().requires_grad_(True)
                r = reconstruction_error(self.dae, xg)
                grad, = torch.autograd.grad(r.sum(), xg)
            todo = (r > self.tau).view(-1, *[1] * (x.ndim - 1))
            if not todo.any():
                break
            step = torch.where(todo, self.step_size * grad.sign(), torch.zeros_like(grad))
            xa = torch.min(torch.max(xa - step, x - self.radius), x + self.radius).clamp(0, 1)
        return xa

    def forward(self, x: torch.Tensor, y=None):
        check_images(x, "APuDAE")
        if self.mode == "direct":
            return self.dae(x), y
        return x + (self.purify(x.detach()) - x).detach(), y  # straight-through gradient


def apudae(model: torch.nn.Module, context, noise_std: float = 0.3, quantile: float = 0.95, steps: int = 10,
           step_size: float = 0.03, radius: float = 0.3, mode: str = "adaptive", train: dict | None = None) -> APuDAE:
    """APuDAE purification (adaptive DAE, related paper 004) in front of the model; its DAE trained and cached.
    `train` overrides the DAE's training budget (max_epochs, patience, n_train)."""
    dae = context.trained(DAE_RECIPE, noise_std=noise_std, **DAE_RECIPE.training_overrides(train))
    with torch.no_grad():
        r = reconstruction_error(dae, torch.from_numpy(context.val.head(5000).x))
    tau = float(torch.quantile(r, quantile))
    return APuDAE(dae, tau, steps=steps, step_size=step_size, radius=radius, mode=mode)
