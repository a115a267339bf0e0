"""The reference a practitioner would choose: an MLP classifier of the attractor network's size,
trained plainly (the undefended reference, `mlp`) or with PGD adversarial training (Madry et al.
2018, "Towards Deep Learning Models Resistant to Adversarial Attacks", `pgd_at`).

The MLP is the attractor network's classification path: 784-500-300-300 with ReLU and a 10-way
linear head (the encoder and head of `AttractorNet`, without the decoder).

Training (both): Adam, batch 128, learning rate 1e-3, up to `max_epochs` epochs over the 50,000
training images, early stopping on the validation split (the best epoch's weights are kept).

PGD-AT, as Madry et al. give it for MNIST: every batch is replaced by its PGD examples (L-inf,
eps 0.3, random start) and the network is trained on those only. Choices where the paper's
recipe does not fit a CPU budget or an MLP, stated here: 10 PGD steps of 0.075 (Madry: 40 of
0.01, 100,000 iterations); eps grows linearly from 0 to 0.3 over the first `ramp_epochs` epochs,
since an MLP trained at eps 0.3 from the first step does not learn (a common warm-up, e.g. Gowal
et al. 2018); early stopping on the validation accuracy under the same PGD at the full eps
(Rice et al. 2020: robust overfitting).
"""

from __future__ import annotations

import torch
from torch import nn

from attractor_bench import early_stopping
from attractor_bench.early_stopping import optimizer_step, report_to

from .attractor import N_CLASSES, SIZES


class MLP(nn.Module):
    """784-500-300-300-10, ReLU: the attractor network's encoder and head, as a plain classifier."""

    def __init__(self, sizes: tuple[int, ...] = SIZES[:4]):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1).to(self.head.weight.dtype)
        for layer in self.layers:
            h = torch.relu(layer(h))
        return self.head(h)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step_size: float,
        gen: torch.Generator) -> torch.Tensor:
    """L-inf PGD with a uniform random start on the cross-entropy (Madry et al.), in [0, 1]."""
    if eps <= 0:
        return x
    was_training = model.training
    model.eval()
    xa = (x + (torch.rand(x.shape, generator=gen).to(x.device) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        xa.requires_grad_(True)
        with torch.enable_grad():
            grad, = torch.autograd.grad(nn.functional.cross_entropy(model(xa), y), xa)
        xa = torch.min(torch.max(xa.detach() + step_size * grad.sign(), x - eps), x + eps).clamp(0, 1)
    model.train(was_training)
    return xa.detach()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    with torch.no_grad():
        return sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item() for i in range(0, len(x), batch)) / len(x)


def fit_classifier(model: nn.Module, ctx, max_epochs: int = 20, patience: int = 3, lr: float = 1e-3, batch_size: int = 128,
                   n_val: int | None = 5000, adversarial: bool = False, eps: float = 0.3, steps: int = 10,
                   step_size: float = 0.075, ramp_epochs: int = 5, n_val_adversarial: int = 1000,
                   name: str = "mlp", regularizer=None, n_train: int | None = None) -> dict:
    """Train `model` (any classifier of (B, 1, 28, 28) images) on ctx.train, early-stopping on ctx.val:
    clean accuracy, or with `adversarial` PGD accuracy at `eps` on the first `n_val_adversarial`
    validation images. `regularizer(model)`, if given, is added to the loss. Returns the history (validation accuracy per epoch, best epoch)."""
    gen = torch.Generator().manual_seed(ctx.seed)
    train = ctx.training_split(n_train)
    dev = torch.device(getattr(ctx, "device", "cpu"))
    model.to(dev)
    x, y = torch.from_numpy(train.x).to(dev), torch.from_numpy(train.y).to(dev)
    val = ctx.val.head(n_val_adversarial if adversarial else n_val)
    xv, yv = torch.from_numpy(val.x).to(dev), torch.from_numpy(val.y).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step(idx: torch.Tensor, epoch: int) -> None:
        xb, yb = x[idx], y[idx]
        if adversarial:  # the eps ramp: eps * epoch / ramp_epochs, then eps
            xb = pgd(model, xb, yb, eps * min(1.0, epoch / ramp_epochs), steps, step_size, gen)
        loss = nn.functional.cross_entropy(model(xb), yb)
        if regularizer is not None:
            loss = loss + regularizer(model)
        optimizer_step(opt, loss)

    def val_accuracy() -> float:
        return accuracy(model, pgd(model, xv, yv, eps, steps, step_size, gen) if adversarial else xv, yv)

    # With the eps ramp, only epochs trained at the full eps may be kept (a budget shorter than
    # the ramp keeps the last epoch's weights).
    history = early_stopping.fit(step, val_accuracy, model, n=len(x), batch_size=batch_size, gen=gen,
                                 max_epochs=max_epochs, patience=patience, first_epoch=ramp_epochs if adversarial else 1,
                                 on_epoch=report_to(ctx.progress, name, max_epochs), optimizer=opt)
    return {**history, "val_metric": f"PGD-{steps} accuracy at eps {eps}" if adversarial else "clean accuracy"}


def fit_mlp(model: nn.Module, ctx, max_epochs: int, patience: int, n_train: int | None) -> dict:
    return fit_classifier(model, ctx, max_epochs=max_epochs, patience=patience, n_train=n_train, name="mlp")


def fit_pgd_at(model: nn.Module, ctx, max_epochs: int, patience: int, n_train: int | None, eps: float, steps: int,
               step_size: float, ramp_epochs: int) -> dict:
    return fit_classifier(model, ctx, max_epochs=max_epochs, patience=patience, n_train=n_train, adversarial=True, eps=eps,
                          steps=steps, step_size=step_size, ramp_epochs=ramp_epochs, name="pgd-at")


def make_mlp(**_) -> MLP:
    return MLP()
