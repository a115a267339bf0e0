"""The ART classifier factory: a trained model as an `art` PyTorchClassifier that checks its inputs.

>>> clf = make_classifier(model, defence=AttractorDefence(model))
>>> x_adv = FastGradientMethod(clf, eps=0.1).generate(x)   # gradients through the defence
"""

from __future__ import annotations

import numpy as np
import torch
from art.defences.preprocessor.preprocessor import Preprocessor
from art.estimators.classification import PyTorchClassifier

from .defences import check_images
from .models import N_CLASSES

INPUT_SHAPE = (1, 28, 28)


def _check(x, where: str) -> None:
    check_images(x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x)), where)


class CheckedClassifier(PyTorchClassifier):
    """ART's PyTorchClassifier, raising ValueError for inputs of the wrong shape, outside [0, 1]
    or with NaN/Inf (ART would otherwise fail deep inside torch, or silently clip them)."""

    def predict(self, x, batch_size: int = 128, training_mode: bool = False, **kwargs):
        _check(x, "classifier.predict")
        return super().predict(x, batch_size=batch_size, training_mode=training_mode, **kwargs)

    def loss_gradient(self, x, y, training_mode: bool = False, **kwargs):
        _check(x, "classifier.loss_gradient")
        return super().loss_gradient(x, y, training_mode=training_mode, **kwargs)

    def class_gradient(self, x, label=None, training_mode: bool = False, **kwargs):
        _check(x, "classifier.class_gradient")
        return super().class_gradient(x, label=label, training_mode=training_mode, **kwargs)

    def fit(self, x, y, batch_size: int = 128, nb_epochs: int = 10, training_mode: bool = True, **kwargs):
        _check(x, "classifier.fit")
        return super().fit(x, y, batch_size=batch_size, nb_epochs=nb_epochs, training_mode=training_mode, **kwargs)


class EoTClassifier(CheckedClassifier):
    """For a randomized model: every gradient is the mean of `eot_samples` gradients, each from its
    own random draw (Expectation over Transformation, Athalye et al. 2018, here over the model's
    randomness). Predictions stay single draws: what a user of the randomized model gets."""

    def __init__(self, *args, eot_samples: int = 8, **kwargs):
        super().__init__(*args, **kwargs)
        if not (isinstance(eot_samples, int) and eot_samples >= 1):
            raise ValueError(f"eot_samples must be a positive integer, got {eot_samples!r}.")
        self.eot_samples = eot_samples

    def _mean(self, gradient, *args, **kwargs):
        return sum(gradient(*args, **kwargs) for _ in range(self.eot_samples)) / self.eot_samples

    def loss_gradient(self, x, y, training_mode: bool = False, **kwargs):
        return self._mean(super().loss_gradient, x, y, training_mode=training_mode, **kwargs)

    def class_gradient(self, x, label=None, training_mode: bool = False, **kwargs):
        return self._mean(super().class_gradient, x, label=label, training_mode=training_mode, **kwargs)


def make_classifier(
    model: torch.nn.Module, defence: Preprocessor | None = None, device: str = "cpu"
) -> PyTorchClassifier:
    """`model` maps (B, 1, 28, 28) images in [0, 1] to logits; `defence`, if given, is applied to
    every input first (prediction and gradients alike). Loss: cross-entropy on the logits.
    A model with `randomized = True` gets an `EoTClassifier` averaging `model.eot_samples` draws
    per gradient."""
    randomized = getattr(model, "randomized", False)
    cls = EoTClassifier if randomized else CheckedClassifier
    extra = {"eot_samples": int(getattr(model, "eot_samples", 8))} if randomized else {}
    return cls(
        model=model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=INPUT_SHAPE,
        nb_classes=N_CLASSES,
        clip_values=(0.0, 1.0),
        preprocessing_defences=[defence] if defence is not None else None,
        device_type="gpu" if str(device).startswith("cuda") else "cpu",
        **extra,
    )
