"""ART-compatible defences and the comparison models, by name.

`DEFENCES`: a suite's `defence.name` (per model, or for the whole suite) picks one; tests iterate
it. Each entry is a factory `factory(model, **params)` that builds an ART preprocessor (ideally a
`PreprocessorPyTorch`, so that white-box attacks can differentiate through it) from the trained
model and the suite's parameters, or returns None for no preprocessing. A factory that also takes
`context` (an `attractor_bench.recipes.Context`) gets the data and the model cache, to train (once)
the networks it needs. Outside defences follow the same contract (see `attractor_bench.plugins`).

`MODELS`: the comparison models a suite's `models.<name>.preset` can name beside the attractor
presets, as `Recipe`s (built, trained once, cached): the undefended MLP, the PGD-trained MLP and
the stochastic-parameter network. `MODELS_INTERNAL`: networks inside the trained defences.
"""

from __future__ import annotations

from typing import Callable

import torch
from art.defences.preprocessor.preprocessor import Preprocessor, PreprocessorPyTorch

from attractor_bench.recipes import Recipe

from . import apudae as _apudae
from . import feature_dae as _feature_dae
from . import mlp as _mlp
from . import stochastic as _stochastic
from .apudae import APuDAE
from .attractor import AttractorDefence, Backward, check_images
from .feature_dae import FeatureDAE
from .ood import PearsonRejector, pearson


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


DEFENCES: dict[str, Callable[..., Preprocessor | None]] = {
    "attractor": AttractorDefence,
    "none": no_defence,
    "apudae": _apudae.apudae,
    "feature_dae": _feature_dae.feature_dae,
}

_TRAINING = {"max_epochs": 20, "patience": 3, "n_train": None}
MODELS: dict[str, Recipe] = {
    "mlp": Recipe("mlp", _mlp.make_mlp, _mlp.fit_mlp, "undefended MLP 784-500-300-300-10 (the attractor network's "
                  "classification path), the reference without defence", dict(_TRAINING)),
    "pgd_at": Recipe("pgd_at", _mlp.make_mlp, _mlp.fit_pgd_at, "the same MLP, PGD adversarial training (Madry et al. 2018), "
                     "L-inf eps 0.3", {**_TRAINING, "max_epochs": 12, "eps": 0.3, "steps": 10, "step_size": 0.075, "ramp_epochs": 5}),
    "stochastic": Recipe("stochastic", _stochastic.make_stochastic, _stochastic.fit_stochastic,
                         "stochastic-parameter MLP (related paper 002): Gaussian weights sampled per image, randomized, "
                         "attacked with EoT", {**_TRAINING, "max_epochs": 10, "prior_std": 0.1},
                         {"eot_samples": 8, "inference_samples": 1}),
}
TRAINING_KEYS = ("max_epochs", "patience", "n_train")  # the budget a trained defence's `train` mapping may change


def training_overrides(recipe: Recipe, train: dict | None) -> dict:
    """The `train` mapping of a trained defence's parameters, checked: only budget keys."""
    train = dict(train or {})
    unknown = sorted(set(train) - set(TRAINING_KEYS))
    if unknown:
        raise ValueError(f"train.{unknown[0]} is not a training budget key; use {', '.join(TRAINING_KEYS)}.")
    return {k: v for k, v in train.items() if k in recipe.defaults}


MODELS_INTERNAL: dict[str, Recipe] = {
    "apudae_dae": Recipe("apudae_dae", _apudae.make_dae, _apudae.fit_gaussian_dae, "APuDAE's denoiser (Gaussian noise)",
                         {"noise_std": 0.3, "max_epochs": 10, "patience": 2, "n_train": None}),
    "feature_cnn": Recipe("feature_cnn", _feature_dae.make_feature_cnn, _feature_dae.fit_feature_cnn,
                          "feature extractor of the feature-loss DAE", {"max_epochs": 3, "patience": 1, "n_train": None}),
    "feature_dae_net": Recipe("feature_dae_net", _feature_dae.make_feature_dae, _feature_dae.fit_feature_dae,
                              "the feature-loss DAE's denoiser", {"max_eps": 0.3, "pixel_weight": 0.1, "max_epochs": 4,
                                                                 "patience": 2, "n_train": None}),
}

__all__ = ["training_overrides", "APuDAE", "FeatureDAE", "MODELS", "MODELS_INTERNAL", "AttractorDefence", "Backward", "PearsonRejector", "pearson", "check_images", "DEFENCES", "StraightThrough",
           "no_defence", "straight_through"]
