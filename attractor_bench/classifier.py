"""The ART classifier factory: a trained model as an `art` PyTorchClassifier that checks its inputs.

>>> clf = make_classifier(model, defence=AttractorDefence(model))
>>> x_adv = FastGradientMethod(clf, eps=0.1).generate(x)   # gradients through the defence
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from art.defences.preprocessor.preprocessor import Preprocessor
from art.estimators.classification import PyTorchClassifier

from .batch_invariance import MIN_ROWS, chunk_padding, pad_rows
from .defenses import check_images
from .losses import RecReduction
from .models import N_CLASSES

INPUT_SHAPE = (1, 28, 28)


def _checked(x, where: str):
    """x, checked; a numpy array made contiguous (ART's torch conversion refuses reversed or strided views)."""
    if not isinstance(x, torch.Tensor):
        x = np.ascontiguousarray(x)
    check_images(x if isinstance(x, torch.Tensor) else torch.as_tensor(x), where)
    return x


def networks(obj, depth: int = 2) -> list[torch.nn.Module]:
    """The torch modules an ART preprocessor computes with: its attributes that are modules, and
    those of the preprocessors it wraps (a straight-through defence wraps the defence)."""
    found = []
    for value in vars(obj).values():
        if isinstance(value, torch.nn.Module):
            found.append(value)
        elif isinstance(value, (tuple, list)):
            found += [v for v in value if isinstance(v, torch.nn.Module)]
        elif isinstance(value, Preprocessor) and depth > 0:
            found += networks(value, depth - 1)
    return found


class CheckedClassifier(PyTorchClassifier):
    """ART's PyTorchClassifier, raising ValueError for inputs of the wrong shape, outside [0, 1]
    or with NaN/Inf (ART would otherwise fail deep inside torch, or silently clip them).

    Its gradients are gradients with respect to the input only: while ART's backward pass runs,
    the parameters of the model and of the defences' networks do not require gradients, so the
    pass computes no weight gradients (ART's would compute them and throw them away: a third of an
    attack step's arithmetic). The input gradients are the same bits; the modules are left as they
    were found (a model being trained elsewhere keeps its trainable parameters)."""

    @contextmanager
    def _input_gradients_only(self) -> Iterator[None]:
        modules = [self._model, *(m for op in self.preprocessing_operations for m in networks(op))]
        params = list({id(p): p for m in modules for p in m.parameters() if p.requires_grad}.values())
        for p in params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in params:
                p.requires_grad_(True)

    _memo: "Memo | None" = None

    @property
    def passes(self) -> dict[str, int]:
        """Images passed through the pipeline so far: `forward` (predictions actually computed, not
        those answered from memory) and `backward` (one per image and gradient: a class gradient
        of every class counts `nb_classes`); attacks' costs are read from it."""
        if "_passes" not in self.__dict__:
            self._passes = {"forward": 0, "backward": 0}
        return self._passes

    def count(self, forward: int = 0, backward: int = 0) -> None:
        self.passes["forward"] += int(forward)
        self.passes["backward"] += int(backward)

    @contextmanager
    def memoized(self) -> Iterator[None]:
        """Within the block, predict answers an input it was asked in its last few calls from memory
        instead of running the pipeline again: the same bits as recomputing it (every batch runs on
        at least MIN_ROWS rows, where a row's prediction does not depend on the rows beside it:
        `attractor_bench.batch_invariance`), one forward pass per distinct input. ART's Square attack asks three
        times per iteration (all current images, the still-robust ones among them, the candidates)
        where one pass (the candidates) is new."""
        self._memo = Memo()
        try:
            yield
        finally:
            self._memo = None

    def predict(self, x, batch_size: int = 128, training_mode: bool = False, **kwargs):
        x = _checked(x, "classifier.predict")
        batch_size = max(int(batch_size), MIN_ROWS)

        def run(rows):  # in chunks of at least MIN_ROWS rows: each row's bits whatever its batch (batch_invariance)
            self.count(forward=len(rows))
            padded = pad_rows(rows, len(rows) + chunk_padding(len(rows), batch_size))
            out = super(CheckedClassifier, self).predict(padded, batch_size=batch_size, training_mode=training_mode, **kwargs)
            return out[: len(rows)]

        if self._memo is None or training_mode or kwargs or not isinstance(x, np.ndarray):
            return run(x)
        return self._memo.predict(x, run)

    def loss_gradient(self, x, y, training_mode: bool = False, **kwargs):
        x = _checked(x, "classifier.loss_gradient")
        self.count(forward=len(x), backward=len(x))
        with self._input_gradients_only():  # on at least MIN_ROWS rows (batch_invariance); the loss is a sum over images
            return super().loss_gradient(pad_rows(x), pad_rows(y), training_mode=training_mode, **kwargs)[: len(x)]

    def class_gradient(self, x, label=None, training_mode: bool = False, **kwargs):
        x = _checked(x, "classifier.class_gradient")
        self.count(forward=len(x), backward=len(x) * (self.nb_classes if label is None else 1))
        if label is not None and np.ndim(label) > 0:
            label = pad_rows(np.asarray(label))
        with self._input_gradients_only():  # on at least MIN_ROWS rows, as loss_gradient
            return super().class_gradient(pad_rows(x), label=label, training_mode=training_mode, **kwargs)[: len(x)]

    def fit(self, x, y, batch_size: int = 128, nb_epochs: int = 10, training_mode: bool = True, **kwargs):
        """ART's fit, on the batch mean of the loss (training's usual scale; gradients use the sum)."""
        x = _checked(x, "classifier.fit")
        reduction = getattr(self._loss, "reduction", None)
        if reduction is not None:
            self._loss.reduction = "mean"
        try:
            return super().fit(x, y, batch_size=batch_size, nb_epochs=nb_epochs, training_mode=training_mode, **kwargs)
        finally:
            if reduction is not None:
                self._loss.reduction = reduction


class Memo:
    """Predictions of the inputs of the last `calls` predict calls. An input is found by a
    fingerprint (its bits as 32-bit words, weighted by fixed random odd words and summed modulo
    2^32: exact, so the same input has the same fingerprint wherever it sits) and confirmed by
    comparing it with the stored input element by element: an answer from memory is always the
    answer for the same input."""

    def __init__(self, calls: int = 3):
        self.calls, self.generations, self.probe = calls, [], None  # per call: sorted fingerprints, inputs, outputs

    def predict(self, x: np.ndarray, run) -> np.ndarray:
        flat = np.ascontiguousarray(x).reshape(len(x), -1)
        if len(flat) == 0:
            return run(x)
        words = flat.view(np.uint32)
        if self.probe is None or len(self.probe) != words.shape[1]:
            self.probe = np.random.default_rng(0).integers(0, 2**31, words.shape[1], dtype=np.uint32) * 2 + 1
        fp, out, todo = (words * self.probe).sum(1, dtype=np.uint32), None, np.arange(len(flat))
        for fps, rows, outs in reversed(self.generations):  # the newest first
            pos = np.minimum(np.searchsorted(fps, fp[todo]), len(fps) - 1)
            cand = np.flatnonzero(fps[pos] == fp[todo])  # then compare only those inputs
            hit = cand[(rows[pos[cand]] == flat[todo[cand]]).all(1)]
            if len(hit):
                out = np.empty((len(flat),) + outs.shape[1:], outs.dtype) if out is None else out
                out[todo[hit]] = outs[pos[hit]]
                todo = np.delete(todo, hit)
            if len(todo) == 0:
                break
        if len(todo):
            fresh = run(x[todo])
            out = np.empty((len(flat),) + fresh.shape[1:], fresh.dtype) if out is None else out
            out[todo] = fresh
        order = np.argsort(fp, kind="stable")
        self.generations = [*self.generations[1 - self.calls:], (fp[order], flat[order], out[order])]
        return out


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

    @contextmanager
    def memoized(self) -> Iterator[None]:
        yield  # every prediction of a randomized model is a fresh draw: nothing to remember

    def loss_gradient(self, x, y, training_mode: bool = False, **kwargs):
        return self._mean(super().loss_gradient, x, y, training_mode=training_mode, **kwargs)

    def class_gradient(self, x, label=None, training_mode: bool = False, **kwargs):
        return self._mean(super().class_gradient, x, label=label, training_mode=training_mode, **kwargs)


@dataclass(frozen=True)
class TrainingCost:
    """The cost an attractor network was trained with (Eq. 4: a1 L_rec + a2 L_eigen + a3 L_cls),
    as an attack's loss (a suite's `loss: training`; the paper, section 2.6: FGSM uses "the cost
    function used to train the model"). L_eigen drops out: in a ReLU network the Jacobian is
    constant on each linear region, so its norm has no input gradient (tests check this against
    the gradient with L_eigen). Networks trained on cross-entropy alone have no TrainingCost."""

    weights: tuple[float, float, float]
    rec_reduction: RecReduction = RecReduction.MEAN


class _SeesInput(torch.nn.Module):
    """The model, remembering the input of its last forward pass (the defence's output, with the
    graph back to the image) for the training cost's reconstruction term."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.last_input = model, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last_input = x
        return self.model(x)


class _TrainingLoss(torch.nn.Module):
    """ART's loss(logits, labels) computing `cost` on the input the model last saw: Eq. 4 with a2 = 0
    (the network's own chain and head, the weights and reconstruction reduction it was trained with),
    summed over the images instead of averaged (as `attractor_loss` does in training), so that each
    image's gradient is its own term's, whatever the batch: `B * attractor_loss` up to rounding."""

    def __init__(self, seen: _SeesInput, cost: TrainingCost):
        super().__init__()
        self.seen, self.cost = seen, cost

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        net, (a_rec, _, a_cls) = self.seen.model, self.cost.weights
        x = self.seen.last_input.flatten(1)  # (B, 784)
        if labels.ndim == 2:  # ART hands a loss it does not know one-hot labels
            labels = labels.argmax(1)
        recon, feats, _ = net.chain()(x, derivatives=False)
        sq_err = (recon - x).pow(2)
        rec = sq_err.mean(1) if self.cost.rec_reduction is RecReduction.MEAN else sq_err.sum(1)  # (B,)
        return a_rec * rec.sum() + a_cls * torch.nn.functional.cross_entropy(net.head(feats), labels, reduction="sum")


def make_classifier(
    model: torch.nn.Module, defence: Preprocessor | None = None, device: str = "cpu", cost: TrainingCost | None = None,
) -> PyTorchClassifier:
    """`model` maps (B, 1, 28, 28) images in [0, 1] to logits; `defence`, if given, is applied to
    every input first (prediction and gradients alike). Loss: cross-entropy on the logits, or
    with `cost` (an attractor network) its training cost; either summed over the images, so that an
    image's gradient does not depend on the batch it is computed in (a mean divides it by the batch
    size, and the rounding of that division flips the sign of near-zero entries). A model with
    `randomized = True` gets an `EoTClassifier` averaging `model.eot_samples` draws per gradient."""
    randomized = getattr(model, "randomized", False)
    cls = EoTClassifier if randomized else CheckedClassifier
    extra = {"eot_samples": int(getattr(model, "eot_samples", 8))} if randomized else {}
    loss = torch.nn.CrossEntropyLoss(reduction="sum")
    if cost is not None:
        model = _SeesInput(model)
        loss = _TrainingLoss(model, cost)
    return cls(
        model=model,
        loss=loss,
        input_shape=INPUT_SHAPE,
        nb_classes=N_CLASSES,
        clip_values=(0.0, 1.0),
        preprocessing_defences=[defence] if defence is not None else None,
        preprocessing=None,  # not ART's default (0, 1) standardisation: two passes over every batch that change no bit
        device_type="gpu" if str(device).startswith("cuda") else "cpu",
        **extra,
    )
