"""The state-of-the-art reference on MNIST: the CNN of Madry et al. (2018), adversarially trained
at L-inf eps 0.3 (`cnn_at`).

Architecture, as in Madry et al.'s MNIST challenge: conv 5x5 with 32 filters, ReLU, 2x2 max
pooling, conv 5x5 with 64 filters, ReLU, 2x2 max pooling, a 1,024-unit ReLU layer and a 10-way
linear head (padding "same", so 28 -> 14 -> 7).

Training: PGD adversarial training with the PGD-AT MLP's loop (`models.mlp.fit_classifier`): every
batch replaced by its L-inf PGD examples at eps 0.3 with a random start. Madry et al. train on
PGD-40 examples (step 0.01) for 100,000 iterations of batch 50 (83 epochs), which does not fit 2
CPU cores; this preset takes 5 steps of 0.1, eps ramped from 0 to 0.3 over the first 2 epochs, up
to 24 epochs with early stopping on the PGD-5 accuracy at the full eps of 1,000 validation images
(patience 4; the best epoch's weights kept). The schedule is chosen on that validation curve (the
training history in the model's checkpoint and run.json); the test images only measure it. An
earlier 4-epoch schedule stopped with the validation accuracy still rising (16.7%, 73.0%, 81.9%,
88.3% after epochs 1 to 4) and reached 86.00% under standard AutoAttack at 0.3 on the
leaderboard's images, 2.50 points below Madry et al.'s 88.50%. An epoch takes about 5 minutes on
2 idle CPU cores; the training saves its state after every epoch and resumes after an interruption
(`attractor_bench.checkpoints`). FGSM with a random start (Wong et al. 2020, step 1.25 eps) was
tried first and overfit catastrophically (validation PGD accuracy at eps 0.3 fell from 10.6% to
0.9% in its first epoch at full eps), so it is not used.
"""

from __future__ import annotations

import torch
from torch import nn

from .attractor import N_CLASSES


class MadryCNN(nn.Module):
    """Madry et al.'s MNIST CNN: conv32-5x5, pool, conv64-5x5, pool, fc1024, fc10 (ReLU)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc = nn.Linear(7 * 7 * 64, 1024)
        self.head = nn.Linear(1024, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(-1, 1, 28, 28).to(self.head.weight.dtype)
        h = nn.functional.max_pool2d(torch.relu(self.conv1(h)), 2)
        h = nn.functional.max_pool2d(torch.relu(self.conv2(h)), 2)
        return self.head(torch.relu(self.fc(h.flatten(1))))


def make_cnn(**_) -> MadryCNN:
    return MadryCNN()
