"""The models under test, by name: the attractor network (`AttractorNet`, trained by
`attractor_bench.training` from the presets `baseline`, `attractor`, `attractor_full`) and the
comparison models a suite's `models.<name>.preset` can name beside them.

`MODELS`: the comparison models as `Recipe`s (built, trained once, cached): the undefended MLP,
the PGD-trained MLP, the stochastic-parameter network and Madry et al.'s CNN with adversarial
training (`cnn_at`, the state-of-the-art reference). Each recipe is a component
(`recipe.<name>`, attractor_bench/components.py) with a version: only a bump retrains it. `attractor_at` (issue 19) is
an `AttractorNet` trained adversarially through its own pipeline: it gets the suite's attractor
defence and rejector like the presets.
"""

from __future__ import annotations

from attractor_bench.recipes import Recipe

from . import attractor_at as _attractor_at
from . import cnn as _cnn
from . import mlp as _mlp
from . import stochastic as _stochastic
from .attractor import MODEL_VERSION, N_CLASSES, SIZES, Activation, AttractorNet, Chain

_TRAINING = {"max_epochs": 20, "patience": 3, "n_train": None}
_LOOP = ("attractor_bench.early_stopping",)
MODELS: dict[str, Recipe] = {
    "mlp": Recipe("mlp", _mlp.make_mlp, _mlp.fit_mlp, "undefended MLP 784-500-300-300-10 (the attractor network's "
                  "classification path), the reference without defence", dict(_TRAINING), depends=_LOOP),
    "pgd_at": Recipe("pgd_at", _mlp.make_mlp, _mlp.fit_pgd_at, "the same MLP, PGD adversarial training (Madry et al. 2018), "
                     "L-inf eps 0.3", {**_TRAINING, "max_epochs": 12, "eps": 0.3, "steps": 10, "step_size": 0.075, "ramp_epochs": 5}, depends=_LOOP),
    "stochastic": Recipe("stochastic", _stochastic.make_stochastic, _stochastic.fit_stochastic,
                         "stochastic-parameter MLP (related paper 002): Gaussian weights sampled per image, randomized, "
                         "attacked with EoT", {**_TRAINING, "max_epochs": 10, "prior_std": 0.1},
                         {"eot_samples": 8, "inference_samples": 1}, depends=_LOOP,
                         version=2),  # 2: subnormal weights set to zero after training (issue 38)
    "cnn_at": Recipe("cnn_at", _cnn.make_cnn, _mlp.fit_pgd_at, "Madry et al.'s MNIST CNN (conv32-conv64-fc1024), PGD "
                     "adversarial training at L-inf eps 0.3 (5 steps, up to 24 epochs, early stopping on validation PGD "
                     "accuracy): the state-of-the-art reference",
                     {**_TRAINING, "max_epochs": 24, "patience": 4, "eps": 0.3, "steps": 5, "step_size": 0.1,
                      "ramp_epochs": 2},
                     depends=_LOOP, version=2),  # 2: up to 24 epochs instead of 4 (issue 38: Madry et al.'s figure)
    "attractor_at": Recipe("attractor_at", _attractor_at.make_attractor_at, _attractor_at.fit_attractor_at,
                           "the attractor network trained adversarially through its pipeline (PGD at L-inf eps 0.3, "
                           "attacked images reconstructed toward the clean ones; issue 19)",
                           {**_TRAINING, "max_epochs": 12, "patience": 3, "eps": 0.3, "steps": 10, "step_size": 0.075,
                            "ramp_epochs": 6, "rec_weight": 0.02},
                           depends=_LOOP),
}

__all__ = ["MODELS", "MODEL_VERSION", "N_CLASSES", "SIZES", "Activation", "AttractorNet", "Chain"]
