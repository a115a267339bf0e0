"""The denoising autoencoder shared by the two purification defences (`apudae`, `feature_dae`), and
its training loop.

Network: fully connected 784-512-256-512-784, ReLU, sigmoid output (images in [0, 1]). The
related papers use convolutional denoisers on CIFAR/ImageNet and leave the MNIST architecture
open; a fully connected one of about the attractor network's size keeps the comparison about
the method rather than the architecture, and trains in minutes on a CPU.

Training (`fit_denoiser`): Adam, batch 128, learning rate 1e-3, up to `max_epochs` epochs over
the 50,000 training images; each batch is corrupted by `corrupt(x, y, gen)` and the loss
`loss(model(x_corrupted), x)` is minimised; early stopping on the same loss over 5,000
validation images (corrupted with a fixed generator), keeping the best epoch's weights.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from attractor_bench import early_stopping
from attractor_bench.early_stopping import optimizer_step, report_to


class DAE(nn.Module):
    """784-512-256-512-784, ReLU, sigmoid output: x (B, 1, 28, 28) -> reconstruction of x's shape."""

    def __init__(self, sizes: tuple[int, ...] = (784, 512, 256, 512, 784)):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1).to(self.layers[0].weight.dtype)
        for layer in self.layers[:-1]:
            h = torch.relu(layer(h))
        return torch.sigmoid(self.layers[-1](h)).view_as(x)


def gaussian(x: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
    """x plus N(0, std^2) noise, clipped to [0, 1]."""
    return (x + std * torch.randn(x.shape, generator=gen).to(x.device)).clamp(0, 1)


def fit_denoiser(model: nn.Module, ctx, corrupt: Callable, loss: Callable, max_epochs: int, patience: int,
                 name: str, n_train: int | None = None, lr: float = 1e-3, batch_size: int = 128, n_val: int = 5000) -> dict:
    """Train `model` to minimise loss(model(corrupt(x, y, gen)), x) on ctx.training_split(n_train):
    Adam at `lr`, batches of `batch_size`; early stopping after `patience` epochs without a new
    lowest validation loss on the first `n_val` validation images (corrupted once, with the
    generator seeded ctx.seed + 1), best weights restored. Returns the history (validation loss
    per epoch, best epoch)."""
    gen = torch.Generator().manual_seed(ctx.seed)
    train = ctx.training_split(n_train)
    dev = torch.device(getattr(ctx, "device", "cpu"))
    model.to(dev)
    x, y = torch.from_numpy(train.x).to(dev), torch.from_numpy(train.y).to(dev)
    val = ctx.val.head(n_val)
    xv, yv = torch.from_numpy(val.x).to(dev), torch.from_numpy(val.y).to(dev)
    xv_corrupt = corrupt(xv, yv, torch.Generator().manual_seed(ctx.seed + 1))
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step(idx: torch.Tensor, epoch: int) -> None:
        optimizer_step(opt, loss(model(corrupt(x[idx], y[idx], gen)), x[idx]))

    def val_loss() -> float:
        with torch.no_grad():
            return sum(loss(model(xv_corrupt[i:i + 1000]), xv[i:i + 1000]).item() * len(xv[i:i + 1000])
                       for i in range(0, len(xv), 1000)) / len(xv)

    return early_stopping.fit(step, val_loss, model, n=len(x), batch_size=batch_size, gen=gen, max_epochs=max_epochs,
                              patience=patience, metric="val_loss", direction="min",
                              on_epoch=report_to(ctx.progress, name, max_epochs), optimizer=opt)
