"""The feature-loss denoising autoencoder (related paper `../shared/seeds/003`: Sivamani, "Feature
Losses for Adversarial Robustness"): a denoiser trained with perceptual losses on the feature
maps of a subnetwork, used as a preprocessing step in front of any classifier.

What the text gives: adversarial perturbations grow into noise in a CNN's feature maps; an extra
subnetwork extracts feature maps, and an autoencoder is trained on perceptual losses of these
feature maps; at test time the autoencoder preprocesses the input of the classifier. What it
leaves open, and what is chosen here:
- the feature subnetwork: the two convolution blocks (conv 5x5, ReLU, 2x2 max-pool; 16 and 32
  channels) of a small CNN trained on MNIST for this purpose (`FeatureCNN`, cached like every
  trained network); the perceptual loss is the mean squared difference of both blocks' feature
  maps between DAE(x~) and the clean x, plus `pixel_weight` (0.1) times the pixel MSE to keep
  the output tied to the image;
- the corrupted inputs x~: adversarial, as the feature-noise argument requires: FGSM examples
  of the feature CNN at an eps drawn uniformly from [0, `max_eps`] (0.3) per image;
- the autoencoder: `defenses.dae.DAE`;
- the classifier behind it: any suite model (the suite uses the undefended `mlp`).

The preprocessor is differentiable: white-box attacks on the `pipeline` target differentiate
through the denoiser and the classifier together (the adaptive attack for this defence).
"""

from __future__ import annotations

import torch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch
from torch import nn

from attractor_bench.models.mlp import fit_classifier
from attractor_bench.recipes import Recipe

from .attractor import check_images
from .dae import DAE, fit_denoiser


class FeatureCNN(nn.Module):
    """conv(1->16, 5x5)-ReLU-pool, conv(16->32, 5x5)-ReLU-pool, 1568-128-10: features(x) gives both blocks' maps."""

    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.block1(x.reshape(-1, 1, 28, 28).to(self.head[1].weight.dtype))
        return [f1, self.block2(f1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[-1])


def make_feature_cnn(**_) -> FeatureCNN:
    return FeatureCNN()


def fit_feature_cnn(model: FeatureCNN, ctx, max_epochs: int, patience: int, n_train: int | None) -> dict:
    return fit_classifier(model, ctx, max_epochs=max_epochs, patience=patience, n_train=n_train, name="feature CNN")


def make_feature_dae(**_) -> DAE:
    return DAE()


def fit_feature_dae(model: DAE, ctx, max_eps: float, pixel_weight: float, max_epochs: int, patience: int,
                    n_train: int | None) -> dict:
    cnn = ctx.trained(CNN_RECIPE, n_train=n_train).eval()
    for p in cnn.parameters():
        p.requires_grad_(False)

    def corrupt(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        xg = x.clone().requires_grad_(True)
        with torch.enable_grad():
            grad, = torch.autograd.grad(nn.functional.cross_entropy(cnn(xg), y), xg)
        eps = torch.rand(len(x), generator=gen).to(x.device).view(-1, 1, 1, 1) * max_eps
        return (x + eps * grad.sign()).clamp(0, 1).detach()

    def loss(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = cnn.features(x)
        feature = sum(nn.functional.mse_loss(a, b) for a, b in zip(cnn.features(out), target))
        return feature + pixel_weight * nn.functional.mse_loss(out, x)

    return fit_denoiser(model, ctx, corrupt, loss, max_epochs, patience, name="feature-loss DAE", n_train=n_train)


_DEPENDS = ("attractor_bench.defenses.dae", "attractor_bench.early_stopping")
CNN_RECIPE = Recipe("feature_cnn", make_feature_cnn, fit_feature_cnn, "feature extractor of the feature-loss DAE",
                    {"max_epochs": 3, "patience": 1, "n_train": None}, depends=_DEPENDS)
DAE_RECIPE = Recipe("feature_dae_net", make_feature_dae, fit_feature_dae, "the feature-loss DAE's denoiser",
                    {"max_eps": 0.3, "pixel_weight": 0.1, "max_epochs": 4, "patience": 2, "n_train": None}, depends=_DEPENDS)


class FeatureDAE(PreprocessorPyTorch):
    """x -> DAE(x), differentiable, as an ART PyTorch preprocessor."""

    def __init__(self, dae: DAE, device_type: str = "cpu"):
        super().__init__(device_type=device_type, is_fitted=True, apply_fit=False, apply_predict=True)
        self.dae = dae.eval()
        for p in self.dae.parameters():
            p.requires_grad_(False)
        self.networks = (self.dae,)

    def forward(self, x: torch.Tensor, y=None):
        check_images(x, "FeatureDAE")
        return self.dae(x), y


def feature_dae(model: torch.nn.Module, context, max_eps: float = 0.3, pixel_weight: float = 0.1,
                train: dict | None = None) -> FeatureDAE:
    """Feature-loss denoising autoencoder (related paper 003) in front of the model; trained and cached.
    `train` overrides the denoiser's training budget (max_epochs, patience, n_train; n_train also
    applies to its feature CNN)."""
    return FeatureDAE(context.trained(DAE_RECIPE, max_eps=max_eps, pixel_weight=pixel_weight,
                                      **DAE_RECIPE.training_overrides(train)))
