"""Standard AutoAttack from its authors' code (Croce & Hein 2020), as PyPI carries it repackaged:
`pyautoattack` (the `fra31/auto-attack` sources; `pip install attractor-bench[autoattack]`).

`StandardAutoAttack(classifier, eps)` attacks the function the ART classifier computes (its
PyTorch preprocessing defences, then its model: the defended pipeline), as a torch module, with
AutoAttack's own `run_standard_evaluation`: each attack only on the images every earlier one
failed on, with the authors' budgets. Version `standard` for a deterministic model (APGD-CE,
APGD-T with 9 target classes, FAB-T with 9 target classes, Square with 5,000 queries; one restart
each), `rand` for a randomized one (an `EoTClassifier`: APGD-CE and APGD-DLR, 20 EoT draws per
gradient). `generate(x, y)` returns the adversarial images (the clean image where every attack
failed), like ART's attacks, so its cells store per-sample outcomes like every other cell.

AutoAttack draws its random starts from torch's generator, seeded with `seed`; the registry draws
it from numpy's generator, which the runner seeds per cell, so a cell repeats bit for bit.

What AutoAttack's run reports is kept (`report`, stored with the cell, read by the verdict:
`indicators.autoattack_findings`): per image, which of its attacks broke it (`aa_broken_by`:
the attack's position in `ATTACKS[version]`, -1 where none did), read from the one forward pass
with which AutoAttack judges each attack's batch (no extra pass), and which of the checks of its
`checks.py` warned (`aa_check_<name>`: randomized, probabilities, dynamic, zero gradients, Square
after the white-box attacks), each from the check function that logged the warning;
`aa_version` is the version's position in `ATTACKS`.

A second seed where the margin is thin (`second_seed`, on by default): where AutoAttack's attacks
after its first still broke more than `ALPHA` of the images it attacked (`margin_is_thin`; Square
doing so is AutoAttack's own warning), the images it left robust are attacked again by standard
AutoAttack with another seed (`seed + 1`), and an image either run broke counts as broken:
`aa_second_seed` says per image what the second run did (`NOT_RUN`, -1 robust again, else the
attack that broke it).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter

import numpy as np
import torch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch

from attractor_bench.batch_invariance import padded_call

ATTACKS = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"), "rand": ("apgd-ce", "apgd-dlr")}
# AutoAttack's threshold on robust accuracy (`checks.check_square_sr`): a share of the images it attacked
ALPHA = 0.002
NOT_RUN = -2  # `aa_second_seed` of an image the second seed did not attack


def margin_is_thin(broken_by: np.ndarray) -> bool:
    """Whether AutoAttack's attacks after its first (APGD-T, FAB-T, Square; APGD-DLR in `rand`)
    broke more than ALPHA of the images it attacked: the stronger attacks still found what the
    first missed (AutoAttack's own warning, `check_square_sr`, is the case of Square), so the
    robust images are attacked again with another seed."""
    return int((broken_by > 0).sum()) > ALPHA * len(broken_by)


# AutoAttack's check functions (pyautoattack/checks.py), by the name the report gives them
CHECKS = {"check_randomized": "randomized", "check_range_output": "probabilities", "check_dynamic": "dynamic",
          "check_zero_gradients": "zero_gradients", "check_square_sr": "square", "check_n_classes": "n_classes"}


class Pipeline(torch.nn.Module):
    """The defended pipeline of an ART PyTorch classifier as a torch module: its preprocessing
    defences' `forward`, then its model (logits)."""

    def __init__(self, classifier):
        super().__init__()
        self.count = getattr(classifier, "count", lambda **_: None)  # a CheckedClassifier counts passes
        ops = list(classifier.preprocessing_operations)
        if not all(isinstance(op, PreprocessorPyTorch) for op in ops):
            raise ValueError("autoattack_standard differentiates the pipeline in torch: every preprocessing defence must be "
                             "an ART PreprocessorPyTorch (got " + ", ".join(type(op).__name__ for op in ops) + ").")
        self.model, self.ops = classifier.model, ops
        self.judging, self.judged = None, []  # (attack name, its batch, labels) -> (name, batch, labels, prediction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count(forward=len(x), backward=len(x) if torch.is_grad_enabled() and x.requires_grad else 0)
        out = padded_call(self._logits, x)  # on at least MIN_ROWS rows: each row's bits whatever its batch
        if self.judging is not None:  # AutoAttack's pass that judges an attack's batch
            name, batch, y = self.judging
            self.judging = None
            self.judged.append((name, batch, y, out.detach().argmax(1)))
        return out


    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x, _ = op.forward(x)
        return self.model(x)


class _Warnings(logging.Handler):
    """The warnings AutoAttack's checks log, counted by the check function that logged them."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.fired: Counter = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.fired[CHECKS.get(record.funcName, record.funcName)] += 1


def _name(attack) -> str:
    """The name AutoAttack's run gives the sub-attack `attack` in its current setting."""
    kind = type(attack).__name__
    if kind == "APGDAttack":
        return f"apgd-{attack.loss}"
    if kind == "APGDAttack_targeted":
        return "apgd-t"
    if kind.startswith("FABAttack"):
        return "fab-t" if attack.targeted else "fab"
    return "square"


class StandardAutoAttack:
    """Standard AutoAttack (`version` `standard`, or `rand` for a randomized model) on an ART
    PyTorch classifier's defended pipeline, L-inf at `eps`."""

    def __init__(self, classifier, eps: float, version: str | None = None, batch_size: int = 500, seed: int | None = None,
                 second_seed: bool = True):
        try:
            from pyautoattack import AutoAttack
        except ImportError as e:  # an optional extra
            raise ImportError("autoattack_standard needs AutoAttack's code: pip install 'attractor-bench[autoattack]' "
                              "(pyautoattack, without dependencies so that torch stays as it is).") from e
        randomized = bool(getattr(classifier, "eot_samples", None))  # EoTClassifier: the model is randomized
        self.version = version or ("rand" if randomized else "standard")
        if self.version not in ATTACKS:
            raise ValueError(f"version must be one of {', '.join(ATTACKS)}, got {self.version!r}.")
        self.classifier, self.eps, self.batch_size = classifier, float(eps), int(batch_size)
        self.seed = int(np.random.randint(2**31 - 1)) if seed is None else int(seed)
        self.second_seed = bool(second_seed)
        self.pipeline = Pipeline(classifier)
        self.attack = AutoAttack(self.pipeline, eps=self.eps, norm="Linf", version=self.version, seed=self.seed,
                                 device=classifier.device)

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **_) -> np.ndarray:
        dev = self.classifier.device
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dev)
        if y is None:  # ART's convention: attack the model's own predictions
            y = self.classifier.predict(x, batch_size=self.batch_size).argmax(1)
        y = np.asarray(y)
        yt = torch.from_numpy(y.argmax(1) if y.ndim == 2 else y).long().to(dev)
        x_adv, report = self._run(self.attack, xt, yt)
        report["aa_version"] = np.array(list(ATTACKS).index(self.version))
        report["aa_second_seed"] = np.full(len(xt), NOT_RUN, np.int8)
        left = np.flatnonzero(report["aa_broken_by"] < 0)  # robust (or wrong clean: AutoAttack skips those)
        if self.second_seed and margin_is_thin(report["aa_broken_by"]) and len(left):
            self.attack.seed = self.seed + 1  # its attacks take their seed from it before each run; budgets unchanged
            try:
                x2, again = self._run(self.attack, xt[left], yt[left])
            finally:
                self.attack.seed = self.seed
            report["aa_second_seed"][left] = again["aa_broken_by"]
            hit = again["aa_broken_by"] >= 0
            x_adv[torch.from_numpy(left[hit])] = x2[torch.from_numpy(hit)]
            for k in (k for k in again if k.startswith("aa_check_")):  # the checks' warnings of both runs
                report[k] = report[k] + again[k]
        self.report = report
        return x_adv.detach().cpu().numpy().astype(np.float32)

    def _run(self, aa, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        """AutoAttack `aa`'s standard evaluation of (x, y) and its report."""
        input_only = getattr(self.classifier, "_input_gradients_only", contextlib.nullcontext)  # a CheckedClassifier's
        with input_only(), self._reporting(aa, x) as report:  # input gradients only, as for ART's attacks
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=self.batch_size)
        return x_adv.detach(), report

    @contextlib.contextmanager
    def _reporting(self, aa, x: torch.Tensor):
        """Within the block: each sub-attack's `perturb` marks AutoAttack's next forward pass as the
        one that judges its batch, and AutoAttack's logger hands its checks' warnings over. The
        report is filled when the block ends."""
        report, handler = {}, _Warnings()
        subs = [aa.apgd, aa.apgd_targeted, aa.fab, aa.square]
        for sub in subs:
            sub.perturb = self._marking(sub, sub.perturb)
        logger = logging.getLogger("auto-attack")
        saved = logger.level, logger.propagate
        logger.setLevel(logging.WARNING)  # its warnings to the report only, not to the console
        logger.propagate = False
        logger.addHandler(handler)
        self.pipeline.judged = []
        try:
            yield report
        finally:
            logger.removeHandler(handler)
            logger.setLevel(saved[0])
            logger.propagate = saved[1]
            for sub in subs:
                sub.__dict__.pop("perturb", None)
        report.update(_broken_by(x, self.pipeline.judged, ATTACKS[self.version]))
        report.update({f"aa_check_{c}": np.array(handler.fired.get(c, 0)) for c in sorted(set(CHECKS.values()))})

    def _marking(self, sub, perturb):
        def marked(x, y, *args, **kwargs):
            adv = perturb(x, y, *args, **kwargs)
            self.pipeline.judging = (_name(sub), x, y)
            return adv
        return marked


def _broken_by(x: torch.Tensor, judged: list, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per image of x, the position in `names` of the first attack whose judged batch held it
    misclassified (-1: none). A batch's images are rows of x, found by their bytes."""
    rows: dict[bytes, list[int]] = {}
    for i, row in enumerate(x.detach().cpu().numpy().reshape(len(x), -1)):
        rows.setdefault(row.tobytes(), []).append(i)
    broken = np.full(len(x), -1, np.int8)
    for name, batch, y, pred in judged:
        wrong = (pred != y).cpu().numpy()
        for row, w in zip(batch.detach().cpu().numpy().reshape(len(batch), -1), wrong):
            for i in rows.get(row.tobytes(), ()):
                if w and broken[i] < 0:
                    broken[i] = names.index(name)
    return {"aa_broken_by": broken}
