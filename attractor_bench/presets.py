"""The attractor-network presets: the paper's two networks and one beyond it.

- `baseline`: a = (0.99, 0, 0.01) on all 50,000 training images;
- `attractor`: a = (0.988, 0.002, 0.01) on 1,000 of them (a seeded random subset), exact L_eigen.

Both train with the paper's stopping rule (section 3.1: stop once validation accuracy has fallen
in 8 consecutive epochs, at most 100 epochs a stage, keep the last weights; `early_stopping:
paper`). The committed runs of suites/mnist_fgsm.yaml, leaderboard.yaml (and the OOD runs that
take its models), mnist_adaptive.yaml and mnist_fgsm_seeds.yaml were trained with the other rule
(restore the best weights after 8 epochs without a new best) and say `early_stopping: best` in
their suite files; suites/mnist_fgsm_readings.yaml trains and reports both (docs/REPRODUCTION.md).

- `attractor_full` (beyond the paper): the attractor loss on all 50,000 training images with the
  fast estimator, fine-tuned from the baseline's weights trained with `best` (its pre-training is
  that baseline's). L_rec summed over pixels: chosen on the validation split
  (results/mnist_fgsm/ABLATION.md).

A preset's values are part of its models' keys (TrainConfig.to_dict), not its source: this module
is kept out of TrainConfig.key's code fingerprint, so that a new preset retrains nothing else.
"""

from __future__ import annotations

from .losses import PenaltyMethod, RecReduction
from .training import EarlyStopping, TrainConfig

_BASELINE_BEST = TrainConfig(weights=(0.99, 0.0, 0.01), n_train=50_000, early_stopping=EarlyStopping.BEST)

PRESETS: dict[str, TrainConfig] = {
    "baseline": TrainConfig(weights=(0.99, 0.0, 0.01), n_train=50_000, early_stopping=EarlyStopping.PAPER),
    "attractor": TrainConfig(weights=(0.988, 0.002, 0.01), n_train=1000, early_stopping=EarlyStopping.PAPER),
    "attractor_full": TrainConfig(weights=(0.988, 0.002, 0.01), n_train=50_000, penalty=PenaltyMethod.ESTIMATE,
                                  rec_reduction=RecReduction.SUM, init=_BASELINE_BEST),
}
