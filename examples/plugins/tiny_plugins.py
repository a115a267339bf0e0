"""A complete outside plugin for attractor-bench: one model, one defence and one attack, each
following the contract in docs/plugins.md. Nothing here imports attractor-bench.

Use it from a suite by reference (`tiny_plugins:small_mlp`, with this folder on PYTHONPATH), or
install this folder (`pip install -e examples/plugins`) so that its entry points register the
names `small_mlp`, `quantize` and `uniform_noise`.
"""

from __future__ import annotations

import numpy as np
import torch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch


# --- a model: builder(train=, val=, seed=, **params) -> trained torch.nn.Module (images -> logits)
def small_mlp(train, val, seed: int, hidden: int = 64, epochs: int = 1, n_train: int = 2000):
    """A one-hidden-layer MLP trained for a few epochs (a tiny outside model)."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))
    x, y = torch.from_numpy(train.x[:n_train]), torch.from_numpy(train.y[:n_train]).long()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    return net.eval()


# --- a defence: factory(model, **params) -> ART preprocessor (or None for no preprocessing)
class Quantize(PreprocessorPyTorch):
    """Bit-depth reduction to `levels` grey levels (a tiny outside defence; its gradient is zero)."""

    def __init__(self, levels: int = 16):
        super().__init__(device_type="cpu", is_fitted=True, apply_fit=False, apply_predict=True)
        self.levels = levels

    def forward(self, x, y=None):
        return torch.round(x * (self.levels - 1)) / (self.levels - 1), y


def quantize(model, levels: int = 16):
    """Bit-depth reduction of the input to `levels` grey levels before the model."""
    return Quantize(levels)


# --- an attack: factory(classifier, eps, **params) -> object with generate(x, y) -> x_adv
class _UniformNoise:
    def __init__(self, eps: float):
        self.eps = eps

    def generate(self, x, y=None):
        noise = np.random.uniform(-self.eps, self.eps, size=x.shape).astype(x.dtype)  # seeded by the runner per cell
        return np.clip(x + noise, 0.0, 1.0)


def uniform_noise(classifier, eps: float):
    """Uniform random noise in the L-inf ball (a tiny outside attack, a floor for real ones)."""
    return _UniformNoise(eps)


uniform_noise.norm = "linf"  # optional attributes: norm, kind, bounded, single_step
uniform_noise.kind = "decision"
