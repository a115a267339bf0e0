"""Training as section 2.5.2 / 3.1.2 of the paper gives it.

Three pre-training stages, each a one-hidden-layer autoencoder (784-500-784, 500-300-500,
300-300-300) with its own 10-way head on its hidden layer and all three losses; stage i learns to
reconstruct the features of the frozen stages before it. Then the stacked network is fine-tuned
with all three losses. Adam, batch 64, learning rates 0.001 / 0.005 / 0.005 (stages) and 0.0005
(fine-tuning), up to 100 epochs per stage, early stopping once validation accuracy has not
improved for 8 epochs (the best weights are restored; `early_stopping: best`), or, as the paper's
text reads, once it has fallen in 8 consecutive epochs (the last weights kept; `early_stopping:
paper`). `TrainConfig` defaults to `best`; the presets (attractor_bench/presets.py) live apart,
so that adding one leaves every other model's key as it is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import early_stopping
from .data import Split
from .early_stopping import optimizer_step, report_to
from .losses import PenaltyMethod, RecReduction, attractor_loss
from .determinism import deterministic
from .files import key
from .models import MODEL_VERSION, Activation, AttractorNet, Chain

# progress(stage_name, epoch, max_epochs, val_accuracy) is called after every epoch.
ProgressFn = Callable[[str, int, int, float], None]


class EarlyStopping(str, Enum):
    BEST = "best"  # stop after `patience` epochs without a new best; restore the best weights
    PAPER = "paper"  # stop after `patience` consecutive falls; keep the last weights (section 3.1)


@dataclass(frozen=True)
class TrainConfig:
    # Loss weights (a1 rec, a2 eigen, a3 cls) of Eq. 4; a2 = 0 is the baseline.
    weights: tuple[float, float, float] = (0.988, 0.002, 0.01)
    # Training samples drawn from the 50,000 non-validation images; None = all of them.
    n_train: int | None = 1000
    # Validation images for early stopping (of the 10,000 held out); None = all of them.
    n_val: int | None = None
    pretrain: bool = True
    pretrain_lrs: tuple[float, float, float] = (0.001, 0.005, 0.005)
    finetune_lr: float = 0.0005
    batch_size: int = 64
    max_epochs: int = 100
    patience: int = 8
    early_stopping: EarlyStopping = EarlyStopping.BEST
    # The paper: "the autoencoder layers use the ReLU activation function" -> ReLU output too.
    output_activation: Activation = Activation.RELU
    rec_reduction: RecReduction = RecReduction.MEAN
    penalty: PenaltyMethod = PenaltyMethod.EXACT
    n_projections: int = 1  # only for penalty = estimate
    seed: int = 0
    # Warm start: the model trained with this config gives the initial weights, and pre-training
    # is skipped (only fine-tuning runs). Part of the key, so a changed init retrains.
    init: "TrainConfig | None" = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["init"] = self.init.to_dict() if self.init is not None else None
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
            elif hasattr(v, "value"):
                d[k] = v.value
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        types = {"output_activation": Activation, "rec_reduction": RecReduction, "penalty": PenaltyMethod,
                 "early_stopping": EarlyStopping}
        kw = {}
        for k, v in d.items():
            if k in types:
                v = types[k](v)
            elif k == "init":
                v = cls.from_dict(v) if v is not None else None
            elif isinstance(v, list):
                v = tuple(float(e) for e in v)
            kw[k] = v
        return cls(**kw)

    def key(self) -> str:
        """A hash of this configuration (the model cache adds the data and the version of the code
        that trains it: `cache.model_key`)."""
        return key(config=self.to_dict(), model_version=MODEL_VERSION)[:16]


def with_seed(cfg: TrainConfig, seed: int) -> TrainConfig:
    """cfg with `seed` set, in its warm start too."""
    init = with_seed(cfg.init, seed) if cfg.init is not None else None
    return dataclasses.replace(cfg, seed=seed, init=init)


@dataclass
class History:
    """Per stage: validation accuracy per epoch, and the epoch whose weights were kept."""

    stages: dict[str, dict] = field(default_factory=dict)


def make_optimizer(params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam as the paper uses it, with PyTorch's fused kernel (on CPU a step of this network's
    1.9M parameters takes ~2 ms instead of ~7-10 ms with the default implementation)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def select_training_data(train: Split, val: Split, cfg: TrainConfig) -> tuple[Split, Split]:
    rng = np.random.default_rng(cfg.seed)
    if cfg.n_train is not None and cfg.n_train < len(train):
        train = train.take(np.sort(rng.choice(len(train), cfg.n_train, replace=False)))
    return train, val.head(cfg.n_val)


def _fit_stage(
    name: str,
    chain: Chain,
    head: nn.Linear,
    params: list[nn.Parameter],
    inputs: Callable[[torch.Tensor], torch.Tensor],
    train: Split,
    val: Split,
    lr: float,
    cfg: TrainConfig,
    gen: torch.Generator,
    progress: ProgressFn | None,
    device: torch.device,
) -> dict:
    """Train `params` (a stage's layers and head, or the whole network) on all three losses: Adam
    at `lr`, batches of cfg.batch_size in a fresh random order every epoch, up to cfg.max_epochs
    epochs; early stopping on the validation accuracy of `head` by cfg.early_stopping's rule with
    cfg.patience (8) epochs (`early_stopping.fit`). `inputs` maps images to the stage's input features."""
    head.to(device)
    opt = make_optimizer(params, lr)
    x_train, y_train = torch.from_numpy(train.x).flatten(1).to(device), torch.from_numpy(train.y).to(device)
    x_val, y_val = torch.from_numpy(val.x).flatten(1).to(device), torch.from_numpy(val.y).to(device)
    with torch.no_grad():
        f_train, f_val = inputs(x_train), inputs(x_val)  # features of the frozen stages before this one

    def step(idx: torch.Tensor, epoch: int) -> None:
        loss, _ = attractor_loss(
            chain, head, f_train[idx], y_train[idx], cfg.weights, cfg.penalty, cfg.n_projections, cfg.rec_reduction
        )
        optimizer_step(opt, loss)

    def val_accuracy() -> float:
        with torch.no_grad():
            return (head(chain(f_val)[1]).argmax(1) == y_val).float().mean().item()

    return early_stopping.fit(step, val_accuracy, params, n=len(f_train), batch_size=cfg.batch_size, gen=gen,
                              max_epochs=cfg.max_epochs, patience=cfg.patience, rule=cfg.early_stopping.value,
                              on_epoch=report_to(progress, name, cfg.max_epochs), optimizer=opt)


def train(train: Split, val: Split, cfg: TrainConfig, progress: ProgressFn | None = None,
          init: AttractorNet | None = None, device: str | torch.device = "cpu") -> tuple[AttractorNet, History]:
    """Train an AttractorNet on (a subset of) `train`, early-stopping on `val`. With `init` (the
    model of `cfg.init`), start from its weights and only fine-tune. Bit-for-bit the same from
    the same seed and data on the same machine (`determinism.deterministic`). Trains on `device`;
    the model is returned on it."""
    with deterministic():
        return _train(train, val, cfg, progress, init, torch.device(device))


def _train(train: Split, val: Split, cfg: TrainConfig, progress: ProgressFn | None,
           init: AttractorNet | None, device: torch.device) -> tuple[AttractorNet, History]:
    train, val = select_training_data(train, val, cfg)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = AttractorNet(cfg.output_activation)
    history = History()
    model.to(device)
    if init is not None:
        model.load_state_dict(init.state_dict())
    elif cfg.pretrain:
        for i, lr in enumerate(cfg.pretrain_lrs):
            chain = model.stage_chain(i)
            # Stages 0 and 1 get a temporary head on their hidden layer; stage 2's is the model's head.
            head = model.head if i == len(cfg.pretrain_lrs) - 1 else nn.Linear(chain.layers[0].out_features, 10)
            params = [p for layer in chain.layers for p in layer.parameters()] + list(head.parameters())

            def frozen(x: torch.Tensor, i: int = i) -> torch.Tensor:
                for layer in model.encoder[:i]:
                    x = torch.relu(layer(x))
                return x

            history.stages[f"pretrain{i + 1}"] = _fit_stage(
                f"pretrain {i + 1}/3", chain, head, params, frozen, train, val, lr, cfg, gen, progress, device
            )
    history.stages["finetune"] = _fit_stage(
        "fine-tune", model.chain(), model.head, list(model.parameters()), lambda x: x,
        train, val, cfg.finetune_lr, cfg, gen, progress, device,
    )
    model.eval()
    return model, history
