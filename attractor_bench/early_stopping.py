"""The one early-stopping training loop of every network the benchmark trains: the paper's
layer-wise stages and fine-tuning (`attractor_bench.training`), the comparison classifiers
(`models.mlp.fit_classifier`: MLP, PGD-AT, stochastic MLP, the feature CNN) and the denoisers
(`defences.dae.fit_denoiser`).

`fit` runs epochs of one optimizer step per batch, in a fresh random order of the training
samples each epoch (`torch.randperm` of the caller's generator), then measures the caller's
validation metric, and stops by one of two rules:

- `best` (every network's default): once `patience` epochs have passed without a new best
  (strictly greater for `direction="max"`, strictly smaller for `"min"`); the best epoch's
  weights are then restored.
- `paper` (the attractor paper's text, section 3.1: "early stopping (based on a criterion of
  accuracy reduction over eight consecutive epochs on the validation data)"): once the metric has
  got worse than the epoch before in `patience` consecutive epochs; the last weights are kept.

What each training chooses (optimizer, batch size, loss, metric, patience) is said
where it is trained. The loop draws nothing itself besides the batch order, so the caller's
step and metric may use the same generator: the draws keep their order.
"""

from __future__ import annotations

import math
from typing import Callable, Literal, Sequence

import torch
from torch import nn

# step(batch_indices, epoch): one optimizer step on the training samples at these indices.
StepFn = Callable[[torch.Tensor, int], None]
# on_epoch(epoch, value): called after every epoch with its validation metric.
OnEpochFn = Callable[[int, float], None]
Direction = Literal["max", "min"]
Rule = Literal["best", "paper"]
RULES = ("best", "paper")


def fit(step: StepFn, validate: Callable[[], float], weights: nn.Module | Sequence[torch.Tensor], *, n: int,
        batch_size: int, gen: torch.Generator, max_epochs: int, patience: int, metric: str = "val_accuracy",
        direction: Direction = "max", first_epoch: int = 1, on_epoch: OnEpochFn | None = None,
        rule: Rule = "best") -> dict:
    """Train with early stopping; returns the history {metric: [value per epoch], "best_epoch",
    "best_" + metric} (under `rule="paper"`, the kept epoch is the last one and "best_epoch" and
    "best_" + metric name it and its value).

    `weights`: a module (its state is kept and restored; it is put in train mode for the steps and
    eval mode for validation) or the tensors trained (a stage of a larger network; modes are left
    alone). `n` training samples are batched `batch_size` at a time. Only epochs from `first_epoch`
    on may become the best (e.g. after a warm-up); patience counts from the best epoch once there
    is one. If no epoch qualified, the last epoch's weights stay and count as the best. Under
    `rule="paper"`, `first_epoch` is ignored: falls are counted from the second epoch on."""
    if direction not in ("max", "min"):
        raise ValueError(f"direction must be 'max' or 'min', got {direction!r}.")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}.")
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be at least 1, got {max_epochs}.")
    module = weights if isinstance(weights, nn.Module) else None
    weights = module if module is not None else tuple(weights)
    better = (lambda a, b: a > b) if direction == "max" else (lambda a, b: a < b)
    best = -math.inf if direction == "max" else math.inf
    best_epoch, best_state, values, falls = 0, None, [], 0
    for epoch in range(1, max_epochs + 1):
        if module is not None:
            module.train()
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            step(order[start:start + batch_size], epoch)
        if module is not None:
            module.eval()
        value = validate()
        values.append(value)
        if on_epoch is not None:
            on_epoch(epoch, value)
        if rule == "paper":
            falls = falls + 1 if len(values) > 1 and better(values[-2], value) else 0
            if falls >= patience:
                break
        elif epoch >= first_epoch and better(value, best):
            best, best_epoch, best_state = value, epoch, _snapshot(weights)
        elif best_state is not None and epoch - best_epoch >= patience:
            break
    if best_state is None:
        best, best_epoch = values[-1], len(values)
    else:
        _restore(weights, best_state)
    return {metric: values, "best_epoch": best_epoch, f"best_{metric}": best}


def _snapshot(weights: nn.Module | tuple[torch.Tensor, ...]) -> dict | list:
    if isinstance(weights, nn.Module):
        return {k: v.clone() for k, v in weights.state_dict().items()}
    return [p.detach().clone() for p in weights]


def _restore(weights: nn.Module | tuple[torch.Tensor, ...], state: dict | list) -> None:
    if isinstance(weights, nn.Module):
        weights.load_state_dict(state)
        return
    with torch.no_grad():
        for p, best in zip(weights, state):
            p.copy_(best)


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One step of `opt` on `loss` (gradients set to None first)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def report_to(progress: Callable[[str, int, int, float], None] | None, name: str, max_epochs: int) -> OnEpochFn | None:
    """An `on_epoch` that calls progress(name, epoch, max_epochs, value), or None without `progress`."""
    if not progress:
        return None
    return lambda epoch, value: progress(name, epoch, max_epochs, value)
