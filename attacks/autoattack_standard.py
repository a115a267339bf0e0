"""Standard AutoAttack from its authors' code (Croce & Hein 2020), as PyPI carries it repackaged:
`pyautoattack` (the `fra31/auto-attack` sources; `pip install attractor-bench[autoattack]`).

`StandardAutoAttack(classifier, eps)` attacks the function the ART classifier computes (its
PyTorch preprocessing defences, then its model: the defended pipeline), as a torch module, with
AutoAttack's own `run_standard_evaluation`: each attack only on the images every earlier one
failed on, with the authors' budgets. Version `standard` for a deterministic model (APGD-CE,
APGD-T with 9 target classes, FAB-T with 9 target classes, Square with 5,000 queries; one restart
each), `rand` for a randomized one (an `EoTClassifier`: APGD-CE and APGD-DLR, 20 EoT draws per
gradient). `generate(x, y)` returns the adversarial images (the clean image where every attack
failed), like ART's attacks, so its cells store per-sample outcomes like every other cell.

AutoAttack draws its random starts from torch's generator, seeded with `seed`; the registry draws
it from numpy's generator, which the runner seeds per cell, so a cell repeats bit for bit.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch

ATTACKS = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"), "rand": ("apgd-ce", "apgd-dlr")}


class Pipeline(torch.nn.Module):
    """The defended pipeline of an ART PyTorch classifier as a torch module: its preprocessing
    defences' `forward`, then its model (logits)."""

    def __init__(self, classifier):
        super().__init__()
        self.count = getattr(classifier, "count", lambda **_: None)  # a CheckedClassifier counts passes
        ops = list(classifier.preprocessing_operations)
        if not all(isinstance(op, PreprocessorPyTorch) for op in ops):
            raise ValueError("autoattack_standard differentiates the pipeline in torch: every preprocessing defence must be "
                             "an ART PreprocessorPyTorch (got " + ", ".join(type(op).__name__ for op in ops) + ").")
        self.model, self.ops = classifier.model, ops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count(forward=len(x), backward=len(x) if torch.is_grad_enabled() and x.requires_grad else 0)
        for op in self.ops:
            x, _ = op.forward(x)
        return self.model(x)


class StandardAutoAttack:
    """Standard AutoAttack (`version` `standard`, or `rand` for a randomized model) on an ART
    PyTorch classifier's defended pipeline, L-inf at `eps`."""

    def __init__(self, classifier, eps: float, version: str | None = None, batch_size: int = 500, seed: int | None = None):
        try:
            from pyautoattack import AutoAttack
        except ImportError as e:  # an optional extra
            raise ImportError("autoattack_standard needs AutoAttack's code: pip install 'attractor-bench[autoattack]' "
                              "(pyautoattack, without dependencies so that torch stays as it is).") from e
        randomized = bool(getattr(classifier, "eot_samples", None))  # EoTClassifier: the model is randomized
        self.version = version or ("rand" if randomized else "standard")
        if self.version not in ATTACKS:
            raise ValueError(f"version must be one of {', '.join(ATTACKS)}, got {self.version!r}.")
        self.classifier, self.eps, self.batch_size = classifier, float(eps), int(batch_size)
        self.seed = int(np.random.randint(2**31 - 1)) if seed is None else int(seed)
        self.pipeline = Pipeline(classifier)
        self.attack = AutoAttack(self.pipeline, eps=self.eps, norm="Linf", version=self.version, seed=self.seed,
                                 device=classifier.device)
        logging.getLogger("auto-attack").setLevel(logging.ERROR)  # its checks are the reliability issue's job

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **_) -> np.ndarray:
        dev = self.classifier.device
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dev)
        if y is None:  # ART's convention: attack the model's own predictions
            y = self.classifier.predict(x, batch_size=self.batch_size).argmax(1)
        y = np.asarray(y)
        yt = torch.from_numpy(y.argmax(1) if y.ndim == 2 else y).long().to(dev)
        input_only = getattr(self.classifier, "_input_gradients_only", contextlib.nullcontext)  # a CheckedClassifier's
        with input_only():  # input gradients only, as for ART's attacks
            x_adv, _ = self.attack.run_standard_evaluation(xt, yt, batch_size=self.batch_size)
        return x_adv.detach().cpu().numpy().astype(np.float32)
