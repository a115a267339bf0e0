"""The attractor network of Alipour & SeyyedSalehi (section 2.5.1).

A fully connected autoencoder 784-500-300-300-300-500-784 with ReLU hidden units and a 10-way
classification head on the 300-unit bottleneck: it reconstructs and classifies at once. At test
time the autoencoder G is iterated, x_{k+1} = G(x_k), until it reaches a fixed point (see
`attractor_bench.defenses.AttractorDefence`).

`forward(x)` returns the logits of a single pass (no iteration), so the module can be handed to
ART's `PyTorchClassifier` as it is; `reconstruct(x)` is G.

>>> model = AttractorNet()
>>> model(torch.rand(8, 1, 28, 28)).shape
torch.Size([8, 10])
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import nn

SIZES = (784, 500, 300, 300, 300, 500, 784)
N_CLASSES = 10
MODEL_VERSION = 2  # bump when the definition or the training numerics change: cached checkpoints are keyed by it


class Activation(str, Enum):
    RELU = "relu"
    SIGMOID = "sigmoid"
    LINEAR = "linear"


def apply(z: torch.Tensor, act: Activation) -> torch.Tensor:
    """`activate`'s output alone, the same bits, without building the derivative: for ReLU, z times
    the boolean z > 0 (promoted to 0.0 / 1.0 in the product, as `activate`'s float mask; not
    `torch.relu`, which gives +0.0 where the product gives -0.0 for negative z)."""
    if act is Activation.RELU:
        return z * (z > 0)
    if act is Activation.SIGMOID:
        return torch.sigmoid(z)
    return z


def activate(z: torch.Tensor, act: Activation) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply `act` to pre-activations z; return (output, elementwise derivative)."""
    if act is Activation.RELU:
        mask = (z > 0).to(z.dtype)
        return z * mask, mask
    if act is Activation.SIGMOID:
        s = torch.sigmoid(z)
        return s, s * (1 - s)
    return z, torch.ones_like(z)


class Chain:
    """A stack of Linear layers with elementwise activations: y = f_L(W_L ... f_1(W_1 x + b_1) ...).

    `tap` is the index of the layer whose output feeds the classification head. Its Jacobian is
    J(x) = D_L W_L ... D_1 W_1 with D_k = diag(f_k'(z_k)), which `attractor_bench.losses` uses.
    """

    def __init__(self, layers: list[nn.Linear], acts: list[Activation], tap: int):
        self.layers, self.acts, self.tap = layers, acts, tap

    def __call__(self, x: torch.Tensor, tangents: torch.Tensor | None = None, derivatives: bool = True):
        """x (B, d_in) -> (output (B, d_out), tapped features (B, n_tap), derivatives [(B, n_k)]).

        With `tangents` v (P, B, d_in) also returns J(x) v (P, B, d_out) as a fourth element,
        propagated beside the forward pass (t <- f'(z) * (W t)): one extra bias-free matmul per
        layer and projection, sharing the forward pass's activation derivatives.

        `derivatives=False` (no tangents): the derivatives are not built and come back as None,
        the output and features the same bits (`apply`); the pass an attack or the defence needs."""
        if not derivatives and tangents is None:
            return self._values(x)
        derivs, feats = [], None
        t = tangents
        for k, (layer, act) in enumerate(zip(self.layers, self.acts)):
            x, d = activate(layer(x), act)
            derivs.append(d)
            if t is not None:
                t = (t @ layer.weight.T) * d
            if k == self.tap:
                feats = x
        if tangents is None:
            return x, feats, derivs
        return x, feats, derivs, t

    def _values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        feats = None
        for k, (layer, act) in enumerate(zip(self.layers, self.acts)):
            x = apply(layer(x), act)
            if k == self.tap:
                feats = x
        return x, feats, None

    def output(self, x: torch.Tensor) -> torch.Tensor:
        return self(x, derivatives=False)[0]


class AttractorNet(nn.Module):
    def __init__(self, output_activation: str | Activation = Activation.RELU):
        super().__init__()
        self.output_activation = Activation(output_activation)
        enc, dec = SIZES[:4], SIZES[3:]
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(enc[:-1], enc[1:]))  # 784-500-300-300
        self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dec[:-1], dec[1:]))  # 300-300-500-784
        self.head = nn.Linear(SIZES[3], N_CLASSES)

    def chain(self) -> Chain:
        """The autoencoder G as a Chain, tapped at the bottleneck."""
        acts = [Activation.RELU] * 5 + [self.output_activation]
        return Chain([*self.encoder, *self.decoder], acts, tap=len(self.encoder) - 1)

    def stage_chain(self, i: int) -> Chain:
        """Pre-training stage i (0, 1, 2): the one-hidden-layer autoencoder encoder[i] / its mirror
        decoder layer. Stage 0 reconstructs pixels (model's output activation); stages 1 and 2
        reconstruct ReLU features, so their decoders are ReLU, as they are inside the stack."""
        out_act = self.output_activation if i == 0 else Activation.RELU
        return Chain([self.encoder[i], self.decoder[len(self.decoder) - 1 - i]], [Activation.RELU, out_act], tap=0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1).to(self.head.weight.dtype)  # (B, 784); ART's numpy path may hand in float64
        for layer in self.encoder:
            h = torch.relu(layer(h))
        return h  # (B, 300)

    def reconstruct_and_classify(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass: (G(x) with x's shape, logits (B, 10))."""
        recon, feats, _ = self.chain()(x.flatten(1).to(self.head.weight.dtype), derivatives=False)
        return recon.view_as(x), self.head(feats)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct_and_classify(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(x))
