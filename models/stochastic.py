"""The stochastic-parameter network of the related paper `../shared/seeds/002` ("every parameter of
the network a statistical distribution with learnable parameters", a randomized model).

What the text gives: each parameter is modelled as a distribution with learnable parameters and
is sampled when the network runs, and the network is trained for the task. What it leaves open,
and what is chosen here:
- the distribution: a Gaussian per weight and per bias, w ~ N(mu, sigma^2), sigma = softplus(rho),
  mu and rho learned (the usual choice for learnable weight distributions);
- the architecture: the MLP of the comparison (`models.mlp.MLP`, 784-500-300-300-10, ReLU);
- the training objective: the evidence lower bound of Bayes by Backprop (Blundell et al. 2015):
  cross-entropy with one weight sample per image plus the KL divergence to a N(0, prior_std^2)
  prior, weighted by 1/n_train. Without a term that rewards variance, sigma shrinks to 0 and the
  network becomes deterministic; the KL term keeps the noise where the task does not need precision;
- sampling: independent weights per image and per forward pass, through the local
  reparameterization (Kingma et al. 2015): a layer's pre-activation given its input is exactly
  Gaussian with mean x mu^T + b and variance x^2 sigma^2^T + sigma_b^2, so one draw per unit
  per image equals a fresh weight draw per image, at the cost of two matrix products;
- inference: one sample per prediction (`inference_samples` = 1, as "sampled at inference"
  reads); predictions are random. A suite can average more samples (`inference_samples`).

Evaluation: the model is marked `randomized`, and attacks see an ART classifier whose gradients
are the mean over `eot_samples` forward/backward passes (Expectation over Transformation, Athalye
et al. 2018; `attractor_bench.classifier.EoTClassifier`). Every cell is seeded, so a run's
random draws, and its tables, repeat exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .attractor import N_CLASSES, SIZES

from attractor_bench.models.mlp import fit_classifier


class StochasticLinear(nn.Module):
    def __init__(self, n_in: int, n_out: int, sigma_init: float = 1e-3):
        super().__init__()
        bound = 1 / math.sqrt(n_in)
        self.weight_mu = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        self.bias_mu = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound))
        rho = math.log(math.expm1(sigma_init))  # softplus^-1
        self.weight_rho = nn.Parameter(torch.full((n_out, n_in), rho))
        self.bias_rho = nn.Parameter(torch.full((n_out,), rho))

    def sigmas(self) -> tuple[torch.Tensor, torch.Tensor]:
        return nn.functional.softplus(self.weight_rho), nn.functional.softplus(self.bias_rho)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sw, sb = self.sigmas()
        mean = nn.functional.linear(x, self.weight_mu, self.bias_mu)
        var = nn.functional.linear(x * x, sw * sw, sb * sb)
        return mean + var.clamp_min(1e-16).sqrt() * torch.randn_like(mean)

    def kl(self, prior_std: float) -> torch.Tensor:
        """KL(N(mu, sigma^2) || N(0, prior_std^2)) summed over this layer's parameters."""
        total = 0.0
        for mu, sigma in ((self.weight_mu, self.sigmas()[0]), (self.bias_mu, self.sigmas()[1])):
            total = total + (torch.log(prior_std / sigma) + (sigma ** 2 + mu ** 2) / (2 * prior_std ** 2) - 0.5).sum()
        return total


class StochasticMLP(nn.Module):
    """784-500-300-300-10 with every weight and bias drawn from its learned Gaussian at each pass."""

    randomized = True  # predictions are random: attacked with EoT, reported as randomized

    def __init__(self, sizes: tuple[int, ...] = SIZES[:4], eot_samples: int = 8, inference_samples: int = 1):
        super().__init__()
        self.layers = nn.ModuleList(StochasticLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = StochasticLinear(sizes[-1], N_CLASSES)
        self.eot_samples, self.inference_samples = eot_samples, inference_samples

    def sample_logits(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1).to(self.head.weight_mu.dtype)
        for layer in self.layers:
            h = torch.relu(layer(h))
        return self.head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of one weight sample, or the log of the mean softmax of `inference_samples` samples."""
        if self.inference_samples <= 1 or self.training:
            return self.sample_logits(x)
        probs = torch.stack([self.sample_logits(x).softmax(1) for _ in range(self.inference_samples)]).mean(0)
        return probs.clamp_min(1e-12).log()

    def kl(self, prior_std: float) -> torch.Tensor:
        return sum(m.kl(prior_std) for m in [*self.layers, self.head])


def make_stochastic(**_) -> StochasticMLP:
    return StochasticMLP()


def fit_stochastic(model: StochasticMLP, ctx, max_epochs: int, patience: int, n_train: int | None, prior_std: float,
                   flush: bool = True) -> dict:
    """Train with the ELBO (module docstring); then, unless `flush` is False (the before side of
    benchmarks/stochastic_subnormals.py), set subnormal weights to zero: the KL term decays unused
    means geometrically toward 0, the trained model had 40,339 of them below float32's smallest
    normal (1.2e-38), and CPU matrix products run about 20x slower on subnormal operands, while a
    weight that small changes no logit by more than ~1e-35."""
    n = len(ctx.training_split(n_train))
    history = fit_classifier(model, ctx, max_epochs=max_epochs, patience=patience, n_train=n_train, name="stochastic",
                             regularizer=lambda m: m.kl(prior_std) / n)
    return {**history, "subnormals_flushed": flush_subnormals_(model) if flush else 0}


def flush_subnormals_(module: nn.Module) -> int:
    """Set every subnormal value of `module`'s parameters to zero, in place; returns how many there were."""
    count = 0
    with torch.no_grad():
        for p in module.parameters():
            small = (p != 0) & (p.abs() < torch.finfo(p.dtype).tiny)
            count += int(small.sum())
            p[small] = 0
    return count
