"""ART's APGD on the classifier it is given (the registry's `apgd_ce`, `apgd_dlr` and the APGD
members of `autoattack_art`)."""

from __future__ import annotations

import copy

from art.estimators.classification import PyTorchClassifier


def on_classifier(attack, clf):
    """ART's APGD attacks a plain PyTorchClassifier that it builds from clf's model with its own loss
    (per image, for its step sizes), and so drops what clf adds: a randomized model's EoT gradients
    (APGD followed single draws), the input checks, the backward pass to the input only. Give it
    clf's own class with APGD's loss instead (a shallow copy: ART's __getstate__ would save the model
    to disk), summed over the images rather than averaged (its per-image values, `reduction="none"`,
    are unchanged)."""
    theirs = attack.estimator
    if theirs is clf or not isinstance(clf, PyTorchClassifier):
        return attack
    ours = object.__new__(type(clf))
    ours.__dict__.update(clf.__dict__)
    for name in ("_reduce_labels", "_int_labels", "_probability_labels"):
        setattr(ours, name, getattr(theirs, name))
    ours._loss = copy.copy(theirs._loss)
    ours._loss.reduction = "sum"  # not APGD's batch mean: an image's gradient whatever its batch (as clf's own loss)
    attack._estimator = ours
    return attack
