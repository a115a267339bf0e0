"""The ART classifier factory: a trained AttractorNet as an `art` PyTorchClassifier.

>>> clf = make_classifier(model, defence=AttractorDefence(model))
>>> x_adv = FastGradientMethod(clf, eps=0.1).generate(x)   # gradients through the defence
"""

from __future__ import annotations

import torch
from art.defences.preprocessor.preprocessor import Preprocessor
from art.estimators.classification import PyTorchClassifier

from .models import N_CLASSES

INPUT_SHAPE = (1, 28, 28)


def make_classifier(
    model: torch.nn.Module, defence: Preprocessor | None = None, device: str = "cpu"
) -> PyTorchClassifier:
    """`model` maps (B, 1, 28, 28) images in [0, 1] to logits; `defence`, if given, is applied to
    every input first (prediction and gradients alike). Loss: cross-entropy on the logits."""
    return PyTorchClassifier(
        model=model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=INPUT_SHAPE,
        nb_classes=N_CLASSES,
        clip_values=(0.0, 1.0),
        preprocessing_defences=[defence] if defence is not None else None,
        device_type="gpu" if str(device).startswith("cuda") else "cpu",
    )
