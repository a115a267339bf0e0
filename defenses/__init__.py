"""ART-compatible defences, by name.

`DEFENCES`: a suite's `defence.name` (per model, or for the whole suite) picks one; tests iterate
it. Each entry is a factory `factory(model, **params)` that builds an ART preprocessor (ideally a
`PreprocessorPyTorch`, so that white-box attacks can differentiate through it) from the trained
model and the suite's parameters, or returns None for no preprocessing. A factory that also takes
`context` (an `attractor_bench.cache.Context`) gets the data and the model cache, to train (once)
the networks it needs. Outside defences follow the same contract (see `attractor_bench.plugins`).

`REJECTORS`: the rejector a registered defence brings, by the defence's class (`rejector_of`; an
outside defence brings its own through a `rejector()` method, docs/plugins.md).

`MODELS_INTERNAL`: the networks inside the trained defences, as `Recipe`s (built, trained once,
cached). The models under test are in `attractor_bench.models`.
"""

from __future__ import annotations

from typing import Callable

import torch
from art.defences.preprocessor.preprocessor import Preprocessor, PreprocessorPyTorch

from attractor_bench.recipes import Recipe

from . import apudae as _apudae
from . import feature_dae as _feature_dae
from .apudae import APuDAE
from .attractor import AttractorDefence, Backward, check_images
from .feature_dae import FeatureDAE
from .ood import PearsonRejector
from attractor_bench.rejectors import Rejector, pearson


def no_defence(model: torch.nn.Module) -> None:
    """No preprocessing: the model's single pass (the undefended reference)."""
    return None


class StraightThrough(PreprocessorPyTorch):
    """BPDA with the identity (Athalye et al. 2018) for any PyTorch preprocessor: the forward
    value is the defence's output, the backward pass treats the defence as the identity."""

    def __init__(self, defence: PreprocessorPyTorch):
        super().__init__(device_type=defence.device_type if hasattr(defence, "device_type") else "cpu",
                         is_fitted=True, apply_fit=False, apply_predict=True)
        self.defence = defence

    def forward(self, x: torch.Tensor, y=None):
        with torch.no_grad():
            value, _ = self.defence.forward(x, y)
        return x + (value - x).detach(), y


def straight_through(defence: Preprocessor | None) -> Preprocessor | None:
    """The BPDA version of `defence`. ART's numpy preprocessors already pass gradients straight
    through (`estimate_gradient`), so they are returned as they are."""
    if isinstance(defence, AttractorDefence):
        return AttractorDefence(defence.model, tol=defence.tol, max_iter=defence.max_iter, backward=Backward.BPDA,
                                clip=defence.clip)
    return StraightThrough(defence) if isinstance(defence, PreprocessorPyTorch) else defence


def _attractor_text(p: dict) -> str:
    return (f"`attractor`: iterate x <- G(x) until max|x_(k+1) - x_k| < {p['tol']:g} per sample, at most {p['max_iter']} "
            f"iterations, iterates clipped to [0, 1]: {p.get('clip', True)}; backward pass for `pipeline` attacks: "
            f"`{p['backward']}`.")


# a built-in defence's parameters in words, for a run's README (report.py); the others are described generically
DESCRIPTIONS: dict[str, Callable[[dict], str]] = {
    "attractor": _attractor_text,
    "none": lambda p: "none (the model's single pass; `pipeline` attacks see the network itself).",
}


DEFENCES: dict[str, Callable[..., Preprocessor | None]] = {
    "attractor": AttractorDefence,
    "none": no_defence,
    "apudae": _apudae.apudae,
    "feature_dae": _feature_dae.feature_dae,
}

# a defence's class -> its rejector's factory, factory(defence, threshold): threshold the suite's
# `rejector.threshold` in the rejector's own units (the attractor's: the similarity T), None to fit it
REJECTORS: dict[type, Callable[..., Rejector]] = {AttractorDefence: PearsonRejector}


def rejector_of(defence, threshold: float | None) -> Rejector | None:
    """The rejector `defence` brings (None: it brings none): a registered defence's from `REJECTORS`,
    an outside one's from its `rejector()` method (a `Rejector`, with a threshold of its own or None)."""
    factory = REJECTORS.get(type(defence))
    if factory is not None:
        return factory(defence, threshold)
    own = getattr(defence, "rejector", None)
    rejector = own() if callable(own) else None
    if rejector is not None and not isinstance(rejector, Rejector):
        raise TypeError(f"{type(defence).__name__}.rejector() returned a {type(rejector).__name__}, not an "
                        "attractor_bench.rejectors.Rejector.")
    return rejector


MODELS_INTERNAL: dict[str, Recipe] = {r.name: r for r in (_apudae.DAE_RECIPE, _feature_dae.CNN_RECIPE, _feature_dae.DAE_RECIPE)}

__all__ = ["APuDAE", "DESCRIPTIONS", "FeatureDAE", "MODELS_INTERNAL", "AttractorDefence", "Backward", "PearsonRejector", "REJECTORS", "Rejector", "pearson", "rejector_of", "check_images", "DEFENCES", "StraightThrough",
           "no_defence", "straight_through"]
