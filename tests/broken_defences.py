"""Broken defences for the reliability self-test (tests/test_indicators.py), not registered for
users: each masks or corrupts the gradients an attack sees, or randomizes the forward pass, in a
known way, and the verdict must say that the evaluation behind it is potentially unreliable.
Each is an outside defence factory, `factory(model, **params) -> PreprocessorPyTorch`, named in
the self-test's suite as `broken_defences:<name>`."""

import torch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch


class _Defence(PreprocessorPyTorch):
    def __init__(self, transform):
        super().__init__(device_type="cpu", is_fitted=True, apply_fit=False, apply_predict=True)
        self.transform = transform

    def forward(self, x, y=None):
        return self.transform(x), y


class _RandomBackward(torch.autograd.Function):
    """The identity forward; backward, a random direction of the true gradient's size per image."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        r = torch.randn_like(g)
        size = g.flatten(1).norm(dim=1) / r.flatten(1).norm(dim=1).clamp_min(1e-12)
        return r * size.view(-1, *([1] * (g.dim() - 1)))


def zero_derivative(model):
    """Binarization at 0.5: its derivative is zero almost everywhere (gradient masking; on MNIST also
    partly robust for real, since its pixels are near 0 or 1)."""
    return _Defence(lambda x: torch.round(x))


def random_gradients(model):
    """The identity, whose backward pass returns random gradients of a plausible size."""
    return _Defence(_RandomBackward.apply)


def exploding_gradients(model, amplitude: float = 100.0, frequency: float = 1e4):
    """x + amplitude * sin(frequency * x) / frequency: the input moves by at most 1% of the pixel
    range, the derivative 1 + amplitude * cos(frequency * x) is about 100 times too large and of
    a sign that changes every 0.0003 of a pixel."""
    return _Defence(lambda x: x + amplitude * torch.sin(frequency * x) / frequency)


def random_noise(model, sigma: float = 0.2):
    """Gaussian noise on every input: a randomized defence that declares no randomness, so its
    attacks get no EoT."""
    return _Defence(lambda x: x + sigma * torch.randn_like(x))
