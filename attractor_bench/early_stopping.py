"""The one early-stopping training loop of every network the benchmark trains: the paper's
layer-wise stages and fine-tuning (`attractor_bench.training`), the comparison classifiers
(`models.mlp.fit_classifier`: MLP, PGD-AT, stochastic MLP, the feature CNN) and the denoisers
(`defenses.dae.fit_denoiser`).

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

from . import checkpoints

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
        rule: Rule = "best", optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Train with early stopping; returns the history {metric: [value per epoch], "best_epoch",
    "best_" + metric} (under `rule="paper"`, the kept epoch is the last one and "best_epoch" and
    "best_" + metric name it and its value).

    `weights`: a module (its state is kept and restored; it is put in train mode for the steps and
    eval mode for validation) or the tensors trained (a stage of a larger network; modes are left
    alone). `n` training samples are batched `batch_size` at a time. Only epochs from `first_epoch`
    on may become the best (e.g. after a warm-up); patience counts from the best epoch once there
    is one. If no epoch qualified, the last epoch's weights stay and count as the best. Under
    `rule="paper"`, `first_epoch` is ignored: falls are counted from the second epoch on.

    Inside `checkpoints.checkpointed(folder)`, the state (with `optimizer`'s, which `step` uses) is
    saved after epochs and a second call resumes from it (`attractor_bench.checkpoints`)."""
    _check(direction, rule, max_epochs)
    module = weights if isinstance(weights, nn.Module) else None
    weights = module if module is not None else tuple(weights)
    ck = checkpoints.current({"n": n, "batch_size": batch_size, "max_epochs": max_epochs, "patience": patience,
                              "rule": rule, "first_epoch": first_epoch, "direction": direction, "metric": metric,
                              "weights": _shapes(weights)})
    loop = _Loop(direction, rule, patience, first_epoch)
    state = ck.load() if ck is not None else None
    if state is not None:
        _restore(weights, state["weights"])
        checkpoints.set_rng_states(gen, state["rng"])
        if state["finished"]:
            if module is not None:
                module.eval()
            return state["history"]
        loop.__dict__.update(state["loop"])
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
    for epoch in range(len(loop.values) + 1, max_epochs + 1):
        if module is not None:
            module.train()
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            step(order[start:start + batch_size], epoch)
        if module is not None:
            module.eval()
        value = validate()
        if on_epoch is not None:
            on_epoch(epoch, value)
        stop = loop.after(epoch, value, weights)
        if ck is not None and not stop and epoch < max_epochs and ck.due(last=False):
            ck.save({"finished": False, "epoch": epoch, "weights": _snapshot(weights), "rng": checkpoints.rng_states(gen),
                     "loop": dict(loop.__dict__), "optimizer": optimizer.state_dict() if optimizer is not None else None})
        if stop:
            break
    history = loop.end(weights, metric)
    if ck is not None:
        ck.save({"finished": True, "weights": _snapshot(weights), "rng": checkpoints.rng_states(gen), "history": history})
    return history


def _check(direction: str, rule: str, max_epochs: int) -> None:
    if direction not in ("max", "min"):
        raise ValueError(f"direction must be 'max' or 'min', got {direction!r}.")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}.")
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be at least 1, got {max_epochs}.")


class _Loop:
    """The early-stopping rule's state: the metric per epoch, the best epoch and its weights, the falls."""

    def __init__(self, direction: Direction, rule: Rule, patience: int, first_epoch: int):
        self.direction, self.rule, self.patience, self.first_epoch = direction, rule, patience, first_epoch
        self.best = -math.inf if direction == "max" else math.inf
        self.best_epoch, self.best_state, self.values, self.falls = 0, None, [], 0

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "max" else a < b

    def after(self, epoch: int, value: float, weights) -> bool:
        """Record the epoch's value; True when training stops here."""
        self.values.append(value)
        if self.rule == "paper":
            self.falls = self.falls + 1 if len(self.values) > 1 and self.better(self.values[-2], value) else 0
            return self.falls >= self.patience
        if epoch >= self.first_epoch and self.better(value, self.best):
            self.best, self.best_epoch, self.best_state = value, epoch, _snapshot(weights)
            return False
        return self.best_state is not None and epoch - self.best_epoch >= self.patience

    def end(self, weights, metric: str) -> dict:
        if self.best_state is None:
            self.best, self.best_epoch = self.values[-1], len(self.values)
        else:
            _restore(weights, self.best_state)
        return {metric: self.values, "best_epoch": self.best_epoch, f"best_{metric}": self.best}


def _shapes(weights: nn.Module | tuple[torch.Tensor, ...]) -> list:
    if isinstance(weights, nn.Module):
        return [[k, list(v.shape)] for k, v in weights.state_dict().items()]
    return [list(p.shape) for p in weights]


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
