"""Across the attacks of a suite: the worst case per sample (its one owner: `worst_case`, once per
model, into the robust-flags record of `flags.py`), and the sanity flags.

Per model, the runner hands over one `Record` per (attack, eps) on MNIST (and per OOD set for
the attacks that ran there): which images were attacked (indices into the suite's test set) and,
per image, whether the defended classifier was right and whether the rejector accepted it.

Worst case (rows `worst_case_<norm>`): at each (norm, eps), an image counts as robust only if
it was classified correctly clean and under every attack of that norm at that eps. Attacks run
on seeded subsets (`n:` in the suite) are nested, so the worst case is taken on the images every
attack saw (`n_samples` says how many); where some attacks ran on all images, the row
`worst_case_<norm>_all_images` repeats the worst case over those attacks on all images.
With the rejector on, an image is safe end to end only if accepted and correct every time, and
`accepted_wrong` counts the images that some attack made accepted and wrong. On an OOD set the
worst case is the share of images accepted under at least one attack.

Sanity flags (after Carlini et al. 2019, "On Evaluating Adversarial Robustness", and the flags of
AutoAttack), each 0 or 1 in rows `attack = sanity`; a model with any flag is marked potentially
unreliable. A perturbation larger than its eps is not a flag but an error (the runner stops).
- `flag_no_collapse_at_eps_0.5`: worst-case accuracy is still >= 10% at L-inf eps 0.5, where an
  attack can turn every image into flat grey (checked only when the suite has eps 0.5);
- `flag_black_box_beats_white_box`: a black-box (score/decision) attack, or a transfer or
  surrogate attack (gradients of another network or of the undefended single pass), has lower
  accuracy than every white-box attack (gradients of the defended classifier, unrolled or BPDA)
  at the same norm and eps, on the same images;
- `flag_single_step_beats_iterative`: FGSM has lower accuracy than every iterative gradient attack
  with the same target, norm and eps, on the same images;
- `flag_zero_gradients`: more than 1% of the clean MNIST images have an input gradient of the
  loss that is exactly zero for a white-box target (`zero_gradient_share_<target>` rows).
The two comparisons between attacks use only attacks that saw every image on their own: in a
`worst_case: cascade` suite, the cascading attacks' accuracies are the cascade's, not theirs.

Cascade (`worst_case: cascade`): each attack ran only on the images every earlier one failed on,
and its record holds, on the others, the outcome of the attack that broke them; the worst case
over the records is the same as over attacks run on every image.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import numpy as np

from .config import Target
from .flags import ModelFlags, RobustFlags

EPS_COLLAPSE, COLLAPSE_MAX_ACC = 0.5, 0.10
ZERO_GRAD_MAX_SHARE = 0.01
WHITE_BOX = {t.value for t in Target if t.white_box}
FLAGS = ("flag_no_collapse_at_eps_0.5", "flag_black_box_beats_white_box", "flag_single_step_beats_iterative",
         "flag_zero_gradients")


@dataclass(frozen=True)
class Record:
    label: str  # attack label; "none" for clean
    eps: float
    norm: str  # linf | l2 | none
    kind: str  # clean | gradient | score | decision (the attack entry's kind)
    single_step: bool
    target: str  # network | pipeline | bpda | transfer (what the attack's gradients or queries see)
    idx: np.ndarray  # sorted indices into the suite's set
    correct: np.ndarray | None  # bool per image (MNIST); None on OOD sets
    accepted: np.ndarray  # bool per image
    cascade: bool = False  # attacked only the images earlier attacks failed on (`worst_case: cascade`)

    @property
    def white_box(self) -> bool:
        """Gradients of the defended classifier itself (`config.Target.white_box`)."""
        return self.kind == "gradient" and self.target in WHITE_BOX

    @property
    def surrogate(self) -> bool:
        """Black box (queries only), or gradients of another network or of the undefended single pass."""
        return self.kind in ("score", "decision") or (self.kind == "gradient" and not self.white_box)

    def on(self, idx: np.ndarray, field: str) -> np.ndarray:
        """This record's `field` on the images `idx` (a subset of self.idx)."""
        return getattr(self, field)[np.searchsorted(self.idx, idx)]


def _groups(records: list[Record]) -> dict[tuple[str, float], list[Record]]:
    groups: dict[tuple[str, float], list[Record]] = {}
    for r in records:
        if r.label != "none":
            groups.setdefault((r.norm, r.eps), []).append(r)
    return groups


def _common(records: list[Record]) -> np.ndarray:
    return reduce(np.intersect1d, [r.idx for r in records])


def worst_case(clean: Record, records: list[Record], ood: dict[str, list[Record]] | None = None) -> ModelFlags:
    """One model's robust-flags record (`flags.py`), computed here once: on MNIST per (norm, eps),
    the clean flags narrowed by every attack there on the images they all saw, then the repeat over
    the attacks that saw every image where some did not; per OOD set (`ood`: its attacked records),
    the images accepted under at least one attack."""
    start = RobustFlags.clean(clean.idx, clean.correct, clean.accepted)
    out = ModelFlags(start)
    for (norm, eps), group in sorted(_groups(records).items()):
        full = [r for r in group if len(r.idx) == len(clean.idx)]
        repeat = [(full, clean.idx, True)] if full and len(full) < len(group) else []
        for rs, idx, all_images in [(group, _common(group), False), *repeat]:
            f = start.start(norm, eps, idx, all_images)
            for r in rs:
                f.narrow(r.label, r.idx, r.correct, r.accepted)
            out.points.append(f)
    for ds, rs in (ood or {}).items():
        out.ood[ds] = []
        for (norm, eps), group in sorted(_groups(rs).items()):
            idx = _common(group)
            f = RobustFlags(norm, eps, idx, *(np.zeros(len(idx), bool) for _ in range(3)))
            for r in group:
                f.narrow(r.label, r.idx, np.zeros(len(r.idx), bool), r.accepted)
            out.ood[ds].append(f)
    return out


def rows(flags: ModelFlags) -> list[tuple[str, str, float, dict]]:
    """(dataset, label, eps, metrics) of the table's `worst_case` rows, read from the record: MNIST,
    then per OOD set the share accepted under at least one attack."""
    out = [("mnist", f"worst_case_{f.norm}" + ("_all_images" if f.all_images else ""), f.eps, f.metrics())
           for f in flags.points]
    for ds, fs in flags.ood.items():
        out += [(ds, f"worst_case_{f.norm}", f.eps, {"accepted": f.fooled.mean(), "n_samples": len(f.idx),
                                                     "n_attacks": len(f.attacks)}) for f in fs]
    return out


def where(norm: str, eps: float) -> str:
    """How an explanation of a flag names its (norm, eps): `(linf eps 0.3)`."""
    return f"({norm} eps {eps:g})"


def _accuracy(r: Record, idx: np.ndarray) -> float:
    return float(r.on(idx, "correct").mean())


def sanity_flags(wc: ModelFlags, records: list[Record], zero_gradient_share: dict[str, float]) -> tuple[dict[str, int], list[str]]:
    """({flag: 0/1} for the flags that could be checked, explanations of the raised ones), from the
    model's worst case `wc` and its attacked MNIST records."""
    flags: dict[str, int] = {}
    why: list[str] = []
    alone = _groups([r for r in records if not r.cascade])  # a cascade cell's accuracy is not its attack's alone

    linf = wc.main().get(("linf", EPS_COLLAPSE))
    if linf:
        acc = linf.robust.mean()
        flags["flag_no_collapse_at_eps_0.5"] = int(acc >= COLLAPSE_MAX_ACC)
        if acc >= COLLAPSE_MAX_ACC:
            why.append(f"worst-case accuracy {where('linf', EPS_COLLAPSE)} is {acc:.2%} (>= 10%) over "
                       f"{', '.join(linf.attacks)}")

    def beats(weak, strong, name: str, what: str, than: str) -> None:
        checked = raised = False
        for (norm, eps), group in sorted(alone.items()):
            for r in filter(weak, group):
                refs = [w for w in group if strong(w, r)]
                if not refs:
                    continue
                checked = True
                idx = reduce(np.intersect1d, [r.idx] + [w.idx for w in refs])
                acc, best = _accuracy(r, idx), min(_accuracy(w, idx) for w in refs)
                if acc < best:
                    raised = True
                    why.append(f"{what} `{r.label}` {where(norm, eps)} reaches {acc:.2%} accuracy, below every "
                               f"{than} there (lowest {best:.2%}, on the same {len(idx)} images)")
        if checked:
            flags[name] = int(raised)

    beats(lambda r: r.surrogate, lambda w, r: w.white_box, "flag_black_box_beats_white_box",
          "black-box/transfer attack", "white-box attack")
    beats(lambda r: r.single_step, lambda w, r: w.kind == "gradient" and not w.single_step and w.target == r.target,
          "flag_single_step_beats_iterative", "single-step attack", "iterative attack with the same target")

    if zero_gradient_share:
        worst_target, share = max(zero_gradient_share.items(), key=lambda kv: kv[1])
        flags["flag_zero_gradients"] = int(share > ZERO_GRAD_MAX_SHARE)
        if share > ZERO_GRAD_MAX_SHARE:
            why.append(f"{share:.2%} of the clean images have an all-zero input gradient on the `{worst_target}` target")
    return flags, why
