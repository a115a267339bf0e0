"""Attack-failure indicators and the reliability verdict, each indicator with its evidence.

A robust accuracy is an upper bound: it holds only if the attacks did not fail for reasons of
their own. The indicators look for such failures where they would matter, on the images the worst
case counts as robust (an image some attack broke cannot be overstated), and the verdict per
(model, norm, eps) is `reliable` or `potentially unreliable` with the indicators behind it.

Per cell (model, attack, eps on MNIST), on `PROBE_IMAGES` images robust in the worst case at that
(norm, eps), a random sample of them seeded per cell (`probe_images`), the attack is run again
with every point it asks the classifier about recorded (`probe_cell`); then, after Pintor et al.
2022 ("Indicators of Attack Failure", their reference code `pralab/IndicatorsOfAttackFailure`) and
AutoAttack's `checks.py`:

- `silent_success`: a point the attack asked about during its run, inside the eps-ball, was
  misclassified by the defended pipeline, yet the attack returned one that is not (the worst case
  is overstated by those images). Raised at 1 image. Targets whose forward pass is the pipeline
  (pipeline, bpda); not for randomized models (one draw misclassifying a point proves nothing).
- `incomplete_optimisation`: `CONTINUE_STEPS` more PGD steps (step 2.5 eps / steps, from the
  returned point, with the attack's own gradients) misclassify the image: the loss had not
  converged. Raised at 1 image: each is a proof that the worst case is too high. Gradient
  attacks, not transfer; advisory for randomized models (every step's prediction is a new draw).
- `unavailable_gradients`: the attack's gradient at the returned point is exactly zero. Raised
  above `ZERO_SHARE` of the probed images (AutoAttack's `check_zero_gradients` raises at one).
- `noisy_gradients`: the gradient does not predict the loss change. Along `FD_DIRECTIONS` random
  directions u, the directional derivative g.u against the central finite difference
  (L(x + h u) - L(x - h u)) / 2h of the same classifier's loss (h = `FD_STEP`, in L2): raised when
  the median cosine between the two over the probed images is below `MIN_COSINE` (random or
  shattered gradients: about 0; a faithful gradient: about 1).
- `gradient_scale`: the median slope (g.u against the finite difference) outside
  [1 / `MAX_SCALE`, `MAX_SCALE`]: exploding or vanishing gradients. The spread of the gradient norm
  (standard deviation of log10 |g|) is reported beside it. Neither gradient check is raised for
  BPDA (its gradient is an approximation by design) or for randomized models (an EoT gradient
  is an estimate).
- `unstable_predictions`: the pipeline's prediction at the returned point changes under
  `NOISE_DRAWS` draws of uniform noise of L-inf size `NOISE`, for more than `UNSTABLE_SHARE` of
  the probed images: the attack's loss is noisy there. Not raised for randomized models attacked
  with EoT (their predictions are draws by design; see `randomized_forward`).
- `transfer_failure` (advisory): of the images whose transfer example fooled its source
  network, the share on which it fools neither the target's defended pipeline nor its undefended
  network: the failure is the surrogate's, not the defence's (Pintor et al.'s transfer failure).
  Reported; it does not decide the verdict, which the white-box attacks cover.

Per standard AutoAttack cell (`autoattack_findings`), what AutoAttack's own run reported (stored
with the cell: `attacks/autoattack_standard.py`), with AutoAttack's thresholds:

- `autoattack_square`: Square broke images after APGD-CE, APGD-T and FAB-T failed on them, more
  than `ALPHA` (0.2%) of the images AutoAttack attacked (its `check_square_sr`; in a cascade, the
  images every cheaper attack left correct). Raised unless the second seed then broke none.
- `autoattack_second_seed`: where AutoAttack's later attacks broke more than 0.2% (the margin is
  thin), its robust images were attacked again with another seed; raised when that broke any
  image (the worst case already counts them; a third seed might find more). Not raised where the
  second seed broke none or was not needed (the count says which).
- `autoattack_zero_gradients`, `autoattack_randomized`, `autoattack_probabilities`: AutoAttack's
  check warned (at one point with an all-zero gradient; two predictions that differ, in the
  `standard` version; outputs that are probabilities). Raised, as AutoAttack warns.
- `autoattack_dynamic`: its `check_dynamic` (autograd in the forward pass); advisory when the suite
  has an adaptive attack, as `gradient_at_inference` below.

Per model (`model_checks`), AutoAttack's checks and Pintor et al.'s unconstrained attack:

- `randomized_forward`: two predictions of the same images differ. Raised when the model is not
  declared randomized (it is then attacked without EoT); advisory when it is.
- `probability_output`: the pipeline outputs rows in [0, 1] that sum to 1 (probabilities, not
  logits: the cross-entropy of attacks saturates).
- `gradient_at_inference`: the forward pass calls autograd (`grad`, `backward`), AutoAttack's
  `check_dynamic`; `fixed_point_iteration`: the defence iterates at inference (the attractor's
  iteration). Both advisory when the suite has an adaptive attack (BPDA or the rejection-aware
  attack), raised otherwise: such defences demand adaptive attacks.
- `zero_gradients`: more than 1% of the clean images have an all-zero gradient on a white-box
  target (the sanity flag `flag_zero_gradients`).
- `unconstrained_failure`: PGD (the registry's, 100 steps) at L-inf eps 1 on `PROBE_IMAGES`
  clean images, per white-box target of the suite: at eps 1 any image can become any other, so
  more than 1 image left correct means the attack, not the model, failed.

Per (model, norm, eps) from the records (`record_checks`): `non_monotone` (an attack's accuracy,
or the worst case, rises with eps by more than `RISE_IMAGES` images on the same images), the
sanity flags of `robustness.sanity_flags` (black box beats white box, single step beats
iterative, no collapse at eps 0.5), and Tramèr 2022's bound for rejecting defences
(`detection_bound`): a detector robust at eps gives a classifier robust at eps/2, so a robust
detection accuracy (clean accepted and correct, and no attack makes it accepted and wrong) above
the best published robust accuracy at eps/2 (`published.py`) is implausible; checked where a
published number at eps/2 exists.

The verdict (`verdict`): potentially unreliable at (norm, eps) when a raised indicator of a cell
there, a raised record check there, or a raised model check applies, unless no image is robust in
the worst case there (0% cannot be overstated). The thresholds are set a priori, from what the
indicator measures (one image of proof; 1% for AutoAttack's zero-gradient rule; a cosine of 0.5,
halfway between a random and a faithful gradient; a factor of 10 in scale), not tuned on results;
the self-test (`tests/test_indicators.py`) checks that broken defences raise them and working
models do not.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from itertools import pairwise

import numpy as np
import torch

from .attacks import ATTACKS, within_budget
from .attacks.autoattack_standard import ALPHA, ATTACKS as AUTOATTACK, NOT_RUN, margin_is_thin
from .cells import run_attack, seed_everything
from .config import AttackSpec, Suite, Target
from .components import versions
from .files import key
from .flags import ModelFlags
from .robustness import EPS_COLLAPSE, Record, where

PROBE_IMAGES = 16
CONTINUE_STEPS = 20
FD_DIRECTIONS, FD_STEP = 8, 1e-2
MIN_COSINE, MAX_SCALE = 0.5, 10.0
NOISE, NOISE_DRAWS, UNSTABLE_SHARE = 1 / 255, 8, 0.25
ZERO_SHARE = 0.01
RISE_IMAGES = 1
UNCONSTRAINED_EPS, UNCONSTRAINED_MAX_CORRECT = 1.0, 1

CELL_INDICATORS = ("silent_success", "incomplete_optimisation", "unavailable_gradients", "noisy_gradients",
                   "gradient_scale", "unstable_predictions", "transfer_failure")
AUTOATTACK_CHECKS = ("autoattack_square", "autoattack_second_seed", "autoattack_zero_gradients", "autoattack_randomized",
                     "autoattack_probabilities", "autoattack_dynamic")
MODEL_CHECKS = ("randomized_forward", "probability_output", "gradient_at_inference", "fixed_point_iteration",
                "zero_gradients", "unconstrained_failure")
RECORD_CHECKS = ("non_monotone", "flag_black_box_beats_white_box", "flag_single_step_beats_iterative",
                 "flag_no_collapse_at_eps_0.5", "detection_bound")


@dataclass
class Finding:
    """One indicator at one place: `count` of `n` checked images (or cells) triggered it, the first
    suite indices among them, whether it was raised (decides the verdict), and why."""

    name: str
    attack: str  # a cell's label, `worst_case_<norm>`, or `model_checks` (`model_checks_pgd_eps1_<target>`)
    norm: str | None  # None: a model check (every norm and eps)
    eps: float | None
    count: int
    n: int
    raised: bool
    samples: list[int] = field(default_factory=list)
    why: str = ""
    value: float | None = None  # the measured statistic, where it is not a count (a median cosine, a slope)

    def as_dict(self) -> dict:
        return asdict(self)


# --- probes ---------------------------------------------------------------------------------------

def _onehot(y: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[y]


def _loss(clf, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cross-entropy of `clf`'s logits, per image, in float64."""
    z = clf.predict(x, batch_size=512).astype(np.float64)
    z -= z.max(1, keepdims=True)
    return np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]


def _dist(q: np.ndarray, x0: np.ndarray, norm: str) -> np.ndarray:
    """(B, K) distances of queried points q (B, D) to the probed images x0 (K, D)."""
    d = q[:, None, :] - x0[None, :, :]
    return np.abs(d).max(2) if norm == "linf" else np.linalg.norm(d, axis=2)


class Queries:
    """Within the block, every point `clf`'s model is asked about (forward passes, for predictions
    and gradients alike, and the torch module AutoAttack attacks) is matched to the probed image
    whose eps-ball holds it; `found[i]` says whether one of them was misclassified. The raw input of
    a pass is taken where the first preprocessing defence receives it (the model's own input when
    there is none)."""

    def __init__(self, clf, x0: np.ndarray, y: np.ndarray, eps: float, norm: str):
        self.clf, self.x0, self.y = clf, x0.reshape(len(x0), -1), y
        self.eps, self.norm = eps, norm
        self.found = np.zeros(len(x0), bool)
        self.asked = 0
        self._raw, self._inside, self._hooks = None, 0, []

    def __enter__(self):
        model = self.clf.model
        ops = list(self.clf.preprocessing_operations)
        out_mod = model[-1] if isinstance(model, torch.nn.Sequential) else model
        in_mod = model[0] if isinstance(model, torch.nn.Sequential) else model
        if ops:
            op, orig = ops[0], ops[0].forward

            def forward(x, y=None):
                self._inside += 1
                try:
                    return orig(x, y)
                finally:
                    self._inside -= 1
                    self._raw = x

            op.forward = forward
            self._hooks.append(lambda: op.__dict__.pop("forward", None))
        else:
            h = in_mod.register_forward_pre_hook(lambda m, inp: setattr(self, "_raw", inp[0]) if not self._inside else None)
            self._hooks.append(h.remove)
        h = out_mod.register_forward_hook(self._seen)
        self._hooks.append(h.remove)
        return self

    def __exit__(self, *exc):
        for undo in self._hooks:
            undo()

    def _seen(self, module, inputs, output) -> None:
        if self._inside or self._raw is None or not isinstance(output, torch.Tensor) or len(output) != len(self._raw):
            return
        q = self._raw.detach().float().reshape(len(output), -1).cpu().numpy()
        self._raw = None
        d = _dist(q, self.x0, self.norm)
        j = d.argmin(1)
        inside = d[np.arange(len(q)), j] <= self.eps * (1 + 1e-5) + 1e-6
        wrong = output.detach().argmax(1).cpu().numpy() != self.y[j]
        self.found[j[inside & wrong]] = True
        self.asked += int(inside.sum())


def _project(x: np.ndarray, x0: np.ndarray, eps: float, norm: str) -> np.ndarray:
    if norm == "linf":
        x = np.clip(x, x0 - eps, x0 + eps)
    else:
        d = (x - x0).reshape(len(x), -1)
        n = np.linalg.norm(d, axis=1, keepdims=True)
        x = x0 + (d * np.minimum(1.0, eps / np.maximum(n, 1e-12))).reshape(x.shape)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def continue_pgd(clf, pipe, x0: np.ndarray, x_adv: np.ndarray, y: np.ndarray, eps: float, norm: str,
                 steps: int = CONTINUE_STEPS) -> np.ndarray:
    """Whether `steps` more PGD steps on `clf`'s loss from x_adv (projected on the eps-ball around x0)
    reach a point the pipeline `pipe` misclassifies, per image."""
    x, step, broken = x_adv.copy(), 2.5 * eps / steps, np.zeros(len(x0), bool)
    onehot = _onehot(y, clf.nb_classes)
    for _ in range(steps):
        g = clf.loss_gradient(x, onehot)
        if norm == "linf":
            x = x + step * np.sign(g)
        else:
            gn = np.linalg.norm(g.reshape(len(g), -1), axis=1).reshape(-1, *([1] * (g.ndim - 1)))
            x = x + step * g / np.maximum(gn, 1e-12)
        x = _project(x, x0, eps, norm)
        broken |= pipe.predict(x, batch_size=512).argmax(1) != y
    return broken


def gradient_quality(clf, x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Per image: whether `clf`'s loss gradient is all zero, its L2 norm, and against central finite
    differences of the same loss along FD_DIRECTIONS random unit directions (restricted to the
    pixels that stay in [0, 1]), the cosine and the least-squares slope of the directional
    derivatives (NaN where the loss does not change measurably along any direction)."""
    # the classifier's loss is the sum over images: each row is that image's own gradient
    g = clf.loss_gradient(x, _onehot(y, clf.nb_classes)).reshape(len(x), -1).astype(np.float64)
    flat = x.reshape(len(x), -1).astype(np.float64)
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((FD_DIRECTIONS, *flat.shape)) * (np.minimum(flat, 1 - flat) >= FD_STEP)
    u /= np.maximum(np.linalg.norm(u, axis=2, keepdims=True), 1e-12)
    pts = np.concatenate([flat + FD_STEP * u, flat - FD_STEP * u]).reshape(-1, *x.shape[1:]).astype(np.float32)
    losses = _loss(clf, pts, np.tile(y, 2 * FD_DIRECTIONS)).reshape(2, FD_DIRECTIONS, len(x))
    fd = (losses[0] - losses[1]) / (2 * FD_STEP)  # (D, K)
    ad = np.einsum("kp,dkp->dk", g, u)
    dot, nfd, nad = (ad * fd).sum(0), np.linalg.norm(fd, axis=0), np.linalg.norm(ad, axis=0)
    measurable = nfd > 1e-5  # float32 losses move by about 1e-7 / h otherwise
    cos = np.where(measurable, dot / np.maximum(nfd * nad, 1e-30), np.nan)
    cos = np.where(measurable & (nad == 0), 0.0, cos)
    slope = np.where(measurable, dot / np.maximum(nfd ** 2, 1e-30), np.nan)
    return {"zero": np.abs(g).max(1) == 0, "norm": np.linalg.norm(g, axis=1), "cosine": cos, "slope": slope}


def unstable(pipe, x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Whether the prediction of any of NOISE_DRAWS noisy copies (uniform, L-inf NOISE) differs from y."""
    rng = np.random.default_rng(seed)
    noisy = np.clip(x[None] + rng.uniform(-NOISE, NOISE, (NOISE_DRAWS, *x.shape)), 0, 1).astype(np.float32)
    pred = pipe.predict(noisy.reshape(-1, *x.shape[1:]), batch_size=512).argmax(1).reshape(NOISE_DRAWS, len(x))
    return (pred != y[None]).any(0)


def probe_images(robust: np.ndarray, seed: int) -> np.ndarray:
    """The images one cell's probes run on: `PROBE_IMAGES` of the cell's `robust` images (suite
    indices), drawn at random with the cell's `seed` (a rerun probes the same ones; each cell its
    own), sorted; all of them where there are no more. Not the first ones by index: at a small eps
    those would be the same few test images in every cell, a sample of ~16 of ~9,000."""
    robust = np.asarray(robust)
    if len(robust) <= PROBE_IMAGES:
        return np.sort(robust)
    return np.sort(np.random.default_rng([seed, 16]).choice(robust, PROBE_IMAGES, replace=False))


def probe_code() -> str:
    """What the stored probes depend on (thresholds excluded: they are applied when reading)."""
    return key(components=versions("verdict"))


def probe_cell(attack: AttackSpec, eps: float, d, x: np.ndarray, y: np.ndarray, seed: int, source=None,
               transfer_x: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The per-image probes of one cell on the images x (robust in the worst case): the attack run
    again with its queries recorded, then continued, its gradient checked and its points shaken.
    For a transfer attack, its stored examples `transfer_x` on these images and its `source`."""
    norm, pipe = attack.entry.norm, d.classifiers[Target.PIPELINE]
    out: dict[str, np.ndarray] = {}
    if attack.target is Target.TRANSFER:
        src = source.classifiers[Target.NETWORK]
        out["fools_source"] = src.predict(transfer_x, batch_size=512).argmax(1) != y
        out["fools_network"] = d.classifiers[Target.NETWORK].predict(transfer_x, batch_size=512).argmax(1) != y
        out["fools_pipeline"] = pipe.predict(transfer_x, batch_size=512).argmax(1) != y
        out["unstable"] = unstable(pipe, transfer_x, y, seed)
        return out
    clf = d.classifiers[attack.target]
    with Queries(clf, x, y, eps, norm) as q:
        x_adv = run_attack(attack, eps, clf, x, y, seed, d.rejector)
    if not attack.entry.bounded:
        x_adv = within_budget(x_adv, x, eps, norm)
    still = pipe.predict(x_adv, batch_size=512).argmax(1) == y
    out.update(found=q.found, asked=np.array(q.asked), robust_again=still, unstable=unstable(pipe, x_adv, y, seed))
    if attack.entry.kind == "gradient":
        seed_everything(seed)
        out["continued_breaks"] = continue_pgd(clf, pipe, x, x_adv, y, eps, norm)
        out.update({f"grad_{k}": v for k, v in gradient_quality(clf, x_adv, y, seed).items()})
    return out


def _traced(pipe, x: np.ndarray) -> int:
    """Calls of autograd's `grad`, `backward` or `_make_grads` during one prediction (AutoAttack's
    `check_dynamic`)."""
    names, calls = {"grad", "backward", "_make_grads"}, [0]

    def trace(frame, event, arg):
        if event == "call" and frame.f_code.co_name in names:
            calls[0] += 1

    old = sys.gettrace()
    sys.settrace(trace)
    try:
        pipe.predict(x, batch_size=512)
    finally:
        sys.settrace(old)
    return calls[0]


def model_probe(d, x: np.ndarray, y: np.ndarray, targets: list[Target], seed: int) -> dict[str, np.ndarray]:
    """The per-model probes on clean images x: two predictions, the output's range, autograd calls in
    the forward pass, and PGD at L-inf eps 1 per white-box target."""
    pipe = d.classifiers[Target.PIPELINE]
    seed_everything(seed)
    first, second = pipe.predict(x, batch_size=512), pipe.predict(x, batch_size=512)
    out = {"differs": np.array(int((first != second).any(1).sum())),
           "probabilities": np.array(bool((first.min() > -1e-5) and (first.max() < 1 + 1e-5)
                                          and (np.abs(first.sum(1) - 1) < 1e-5).all())),
           "autograd_calls": np.array(_traced(pipe, x[:4]))}
    for t in targets:
        seed_everything(seed)
        attack = ATTACKS["pgd"].build(d.classifiers[t], UNCONSTRAINED_EPS, max_iter=100, num_random_init=0)
        x_adv = attack.generate(x, y=y).astype(np.float32)
        out[f"unconstrained_correct_{t.value}"] = pipe.predict(x_adv, batch_size=512).argmax(1) == y
    return out


# --- reading the probes into findings ---------------------------------------------------------------

def _first(idx: np.ndarray, mask: np.ndarray, n: int = 5) -> list[int]:
    return [int(i) for i in idx[mask][:n]]


def cell_findings(attack: AttackSpec, eps: float, idx: np.ndarray, p: dict[str, np.ndarray], randomized: bool) -> list[Finding]:
    """The indicators of one cell from its probes on the images `idx` (suite indices)."""
    label, norm, n, out = attack.label, attack.entry.norm, len(idx), []

    def add(name, mask, raised, why, value=None, of=None):
        c = int(mask.sum()) if mask is not None else 0
        out.append(Finding(name, label, norm, eps, c, n if of is None else int(of), bool(raised),
                           _first(idx, mask) if mask is not None else [], why, value))

    if attack.target is Target.TRANSFER:
        fooled_src = p["fools_source"]
        fail = fooled_src & ~p["fools_network"] & ~p["fools_pipeline"]
        add("transfer_failure", fail, False, f"{int(fail.sum())} of the {int(fooled_src.sum())} examples that fool the source "
            f"network `{attack.source}` fool neither this model's network nor its pipeline (advisory)", of=fooled_src.sum())
        return out
    pipeline_forward = attack.target in (Target.PIPELINE, Target.BPDA)
    if pipeline_forward and not randomized:
        silent = p["found"] & p["robust_again"]
        add("silent_success", silent, silent.sum() >= 1,
            f"the attack asked about a misclassified point inside the eps-ball of {int(silent.sum())} image(s) and returned "
            "a correctly classified one")
    if "continued_breaks" in p:
        cont = p["continued_breaks"]
        add("incomplete_optimisation", cont, cont.sum() >= 1 and not randomized,
            f"{CONTINUE_STEPS} more PGD steps from the returned points misclassify {int(cont.sum())} image(s)"
            + ("; one draw of a randomized model misclassifying a point is no proof (advisory)" if randomized else ""))
        zero = p["grad_zero"]
        add("unavailable_gradients", zero, zero.mean() > ZERO_SHARE,
            f"the attack's gradient is all zero at {int(zero.sum())} returned point(s)")
        judged = attack.target is not Target.BPDA and not randomized
        cos, slope = p["grad_cosine"], p["grad_slope"]
        ok = ~np.isnan(cos)
        med_cos = float(np.median(cos[ok])) if ok.any() else float("nan")
        low = ok & (cos < MIN_COSINE)
        add("noisy_gradients", low, judged and ok.any() and med_cos < MIN_COSINE,
            f"median cosine {med_cos:.2f} between the gradient's and finite differences' directional derivatives "
            f"(on {int(ok.sum())} images where the loss moves)" + ("" if judged else "; not judged for this target/model"),
            value=med_cos)
        med_slope = float(np.median(slope[ok])) if ok.any() else float("nan")
        off = ok & ((np.abs(slope) > MAX_SCALE) | (np.abs(slope) < 1 / MAX_SCALE))
        lognorm = np.log10(np.maximum(p["grad_norm"], 1e-30))
        add("gradient_scale", off, judged and ok.any() and not (1 / MAX_SCALE <= abs(med_slope) <= MAX_SCALE),
            f"median slope {med_slope:.3g} of gradient against finite-difference derivatives; gradient norm spread "
            f"{float(lognorm.std()):.2f} decades" + ("" if judged else "; not judged for this target/model"), value=med_slope)
    unst = p["unstable"] & p.get("robust_again", np.ones(n, bool))
    add("unstable_predictions", unst, (not randomized) and unst.mean() > UNSTABLE_SHARE,
        f"noise of L-inf {NOISE:.4f} changes the prediction at {int(unst.sum())} returned point(s)"
        + ("; a randomized model's predictions are draws (advisory)" if randomized else ""))
    return out


def autoattack_findings(attack: AttackSpec, eps: float, idx: np.ndarray, out: dict[str, np.ndarray],
                        adaptive: bool) -> list[Finding]:
    """AutoAttack's own checks in one standard AutoAttack cell, from the report stored with it
    (`aa_*`: see attacks/autoattack_standard.py), on the cell's images `idx` (suite indices)."""
    label, norm = attack.label, attack.entry.norm
    names = AUTOATTACK[list(AUTOATTACK)[int(out["aa_version"])]]
    by, again = out["aa_broken_by"], out["aa_second_seed"]
    given = by != NOT_RUN  # the images AutoAttack attacked (in a cascade: those every cheaper attack left correct)
    n, ran = int(given.sum()), again >= -1
    broke_again = again >= 0
    second = (f"the second seed attacked the {int(ran.sum())} image(s) left robust and broke {int(broke_again.sum())}"
              if ran.any() else "no second seed ran")
    out_ = []
    if "square" in names:
        sq = by == names.index("square")
        fired = sq.sum() > ALPHA * n
        out_.append(Finding("autoattack_square", label, norm, eps, int(sq.sum()), n, bool(fired and (broke_again.any() or not ran.any())),
                            _first(idx, sq), f"Square broke {int(sq.sum())} of the {n} image(s) AutoAttack attacked after its "
                            f"gradient attacks failed on them (AutoAttack warns above {ALPHA:.1%}); {second}"))
    later = int((by > 0).sum())
    out_.append(Finding("autoattack_second_seed", label, norm, eps, int(broke_again.sum()), int(ran.sum()),
                        bool(broke_again.any()), _first(idx, broke_again),
                        f"AutoAttack's attacks after {names[0].upper()} broke {later} of {n} image(s)"
                        + (f" (more than {ALPHA:.1%}: the margin is thin); {second}" if margin_is_thin(by[given])
                           else f" (at most {ALPHA:.1%}): no second seed needed")))
    for check, what in (("zero_gradients", "warned of points with an all-zero gradient"),
                        ("randomized", "found two predictions that differ (a randomized defence attacked without EoT)"),
                        ("probabilities", "found outputs that are probabilities, not logits"),
                        ("dynamic", "found autograd calls in the forward pass (a dynamic defence)")):
        times = int(out[f"aa_check_{check}"])
        raised = times > 0 and not (check == "dynamic" and adaptive)
        out_.append(Finding(f"autoattack_{check}", label, norm, eps, times, 1, raised, [],
                            (f"AutoAttack's check {what} ({times} warning(s))" if times else f"AutoAttack's check: no warning")
                            + ("; the suite has adaptive attacks (advisory)" if times and not raised else "")))
    return out_


def model_findings(p: dict[str, np.ndarray], idx: np.ndarray, randomized: bool, iterates: bool, adaptive: bool,
                   zero_share: dict[str, float]) -> list[Finding]:
    out = []
    n = len(idx)
    differs = int(p["differs"])
    out.append(Finding("randomized_forward", "model_checks", None, None, differs, n, differs > 0 and not randomized, [],
                       f"two predictions differ on {differs} of {n} clean images"
                       + ("; the model is declared randomized and attacked with EoT (advisory)" if randomized else
                          "; the model is not declared randomized, so its attacks use no EoT" if differs else "")))
    prob = bool(p["probabilities"])
    out.append(Finding("probability_output", "model_checks", None, None, int(prob), 1, prob, [],
                       "the pipeline's outputs are probabilities, not logits" if prob else "logits"))
    calls = int(p["autograd_calls"])
    note = "; the suite has adaptive attacks (BPDA or rejection-aware)" if adaptive else "; the suite has no adaptive attack"
    out.append(Finding("gradient_at_inference", "model_checks", None, None, calls, 1, calls > 0 and not adaptive, [],
                       f"{calls} autograd call(s) in one forward pass" + (note if calls else "")))
    out.append(Finding("fixed_point_iteration", "model_checks", None, None, int(iterates), 1, iterates and not adaptive, [],
                       ("the defence iterates to a fixed point at inference" + note) if iterates else "no iteration at inference"))
    if zero_share:
        t, share = max(zero_share.items(), key=lambda kv: kv[1])
        out.append(Finding("zero_gradients", "model_checks", None, None, int(share > ZERO_SHARE), 1, share > ZERO_SHARE, [],
                           f"{share:.2%} of the clean images have an all-zero gradient on the `{t}` target", value=share))
    for k in sorted(p):
        if k.startswith("unconstrained_correct_"):
            t, c = k.removeprefix("unconstrained_correct_"), p[k]
            out.append(Finding("unconstrained_failure", f"model_checks_pgd_eps1_{t}", None, None, int(c.sum()), n,
                               c.sum() > UNCONSTRAINED_MAX_CORRECT, _first(idx, c),
                               f"PGD at L-inf eps {UNCONSTRAINED_EPS:g} through the `{t}` target leaves {int(c.sum())} of {n} "
                               "images correct"))
    return out


def record_findings(wc: ModelFlags, records: list[Record], has_rejector: bool,
                    published_best: dict[tuple[str, float], float]) -> list[Finding]:
    """Monotonicity in eps (per attack that saw every image on its own, and the worst case `wc`)
    and Tramèr's detection bound, from the records and the model's robust flags."""
    out = []
    by_attack: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        if not r.cascade:
            by_attack.setdefault((r.label, r.norm), []).append(r)
    for (label, norm), rs in by_attack.items():
        rs = sorted(rs, key=lambda r: r.eps)
        for a, b in pairwise(rs):
            common = np.intersect1d(a.idx, b.idx)
            ca, cb = a.on(common, "correct"), b.on(common, "correct")
            rise = int(cb.sum() - ca.sum())
            out.append(Finding("non_monotone", label, norm, b.eps, max(rise, 0), len(common), rise > RISE_IMAGES,
                               _first(common, cb & ~ca), f"accuracy at eps {b.eps:g} is {rise:+d} images against eps {a.eps:g}"))
    by_norm: dict[str, list] = {}
    for (norm, _), f in sorted(wc.main().items()):
        by_norm.setdefault(norm, []).append(f)
    for norm, pts in by_norm.items():
        for fa, fb in pairwise(pts):
            common = np.intersect1d(fa.idx, fb.idx)
            a, b = fa.on(common, "robust"), fb.on(common, "robust")
            rise = int(b.sum() - a.sum())
            out.append(Finding("non_monotone", f"worst_case_{norm}", norm, fb.eps, max(rise, 0), len(common), rise > RISE_IMAGES,
                               _first(common, b & ~a), f"worst case at eps {fb.eps:g} is {rise:+d} images against eps {fa.eps:g}"))
    return out + (_detection_bound(wc, published_best) if has_rejector else [])


def _detection_bound(wc: ModelFlags, published_best: dict[tuple[str, float], float]) -> list[Finding]:
    """Tramèr's bound per (norm, eps) of the worst case: the robust detection accuracy (clean
    accepted and correct, and no attack made it accepted and wrong) against the best published
    robust accuracy at eps/2."""
    out = []
    for (norm, eps), f in sorted(wc.main().items()):
        bound = published_best.get((norm, round(eps / 2, 6)))
        if bound is None:
            continue
        ok = wc.clean.on(f.idx, "safe") & ~f.fooled
        acc = float(ok.mean())
        out.append(Finding("detection_bound", f"worst_case_{norm}", norm, eps, int(ok.sum()), len(f.idx), acc > bound, [],
                           f"robust detection accuracy {acc:.2%} at eps {eps:g} against the best published robust "
                           f"accuracy {bound:.2%} at eps {eps / 2:g} (Tramèr 2022)", value=acc))
    return out


def sanity_findings(flags: dict[str, int], why: list[str], records: list[Record]) -> list[Finding]:
    """The sanity flags of `robustness.sanity_flags` as findings of the (norm, eps) each explanation
    names (`robustness.where`); a flag that was checked and not raised is a finding of every point."""
    out = []
    points = sorted({(r.norm, r.eps) for r in records if r.norm != "none"})
    for name, v in flags.items():
        if name == "flag_zero_gradients":
            continue  # a model check (`zero_gradients`)
        for norm, eps in points if name != "flag_no_collapse_at_eps_0.5" else [("linf", EPS_COLLAPSE)]:
            lines = [w for w in why if _concerns(name, w) and where(norm, eps) in w]
            out.append(Finding(name, f"worst_case_{norm}", norm, eps, len(lines), 1, bool(v and lines), [],
                               "; ".join(lines) or "not raised here"))
    return out


def _concerns(flag: str, why: str) -> bool:
    return {"flag_no_collapse_at_eps_0.5": "worst-case accuracy", "flag_black_box_beats_white_box": "black-box",
            "flag_single_step_beats_iterative": "single-step"}[flag] in why


def verdict(findings: list[Finding], wc: ModelFlags) -> list[dict]:
    """Per (norm, eps) of the worst case `wc`: potentially unreliable or not, with the raised findings."""
    out = []
    points = wc.main()
    robust = {k: int(f.robust.sum()) for k, f in points.items()}
    for norm, eps in sorted(points):
        here = [f for f in findings if f.raised and (f.norm is None or (f.norm == norm and f.eps == eps))]
        none_robust = robust.get((norm, eps), 1) == 0
        out.append({"norm": norm, "eps": eps, "potentially_unreliable": bool(here) and not none_robust,
                    "robust_images": robust.get((norm, eps)),
                    "indicators": [f.as_dict() for f in here] if not none_robust else [],
                    "note": "no image is robust in the worst case: nothing to overstate" if none_robust and here else ""})
    return out


PROBE_PARAMS = dict(continue_steps=CONTINUE_STEPS, fd_directions=FD_DIRECTIONS, fd_step=FD_STEP, noise=NOISE,
                    noise_draws=NOISE_DRAWS, unconstrained_eps=UNCONSTRAINED_EPS)


def probe_key(cell_key: str, idx: np.ndarray, seed: int) -> str:
    """The store key of one cell's probes: the cell, the probed images, the seed, the probe code and
    the constants that shape the probes (not the thresholds: they are applied when reading)."""
    return key(stage="probe", cell=cell_key, images=[int(i) for i in idx], seed=seed, code=probe_code(), params=PROBE_PARAMS)


def model_key(model_fingerprint: str, images_key: str, n: int, seed: int, targets: list[str]) -> str:
    """The store key of one model's checks (`model_probe`)."""
    return key(stage="model_checks", model=model_fingerprint, images=images_key, n=n, seed=seed, targets=targets,
               code=probe_code(), params=PROBE_PARAMS)


def suite_is_adaptive(suite: Suite) -> bool:
    return any(a.target is Target.BPDA or a.entry.needs_rejector for a in suite.attacks)
