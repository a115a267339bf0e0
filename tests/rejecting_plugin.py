"""A tiny outside defence that brings its own rejector (docs/plugins.md, "A defence with a rejector"):
its preprocessor clips the input, and its `rejector()` returns an `attractor_bench.rejectors.Rejector`
(minus the model's maximum softmax probability, threshold fitted by the runner)."""

import torch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch

from attractor_bench.rejectors import Rejector


class SoftmaxRejector(Rejector):
    name = "plugin_msp"

    def __init__(self, model):
        super().__init__(threshold=None)  # None: fitted on the validation split (95% accepted)
        self.model = model

    def forward(self, x):
        return -torch.softmax(self.model(x), 1).amax(1)


class ClipWithRejector(PreprocessorPyTorch):
    def __init__(self, model):
        super().__init__(device_type="cpu", is_fitted=True, apply_fit=False, apply_predict=True)
        self.model = model

    def forward(self, x, y=None):
        return x.clamp(0.0, 1.0), y

    def rejector(self) -> Rejector:
        return SoftmaxRejector(self.model)


def clip_with_rejector(model):
    return ClipWithRejector(model)
