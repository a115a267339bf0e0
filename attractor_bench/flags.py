"""The robust-flags record: one model's worst case, per (norm, eps), image by image.

After AutoAttack's `EvaluationState.robust_flags` (`autoattack/state.py`): one boolean per image,
true while every attack so far failed on it, that each attack narrows (`RobustFlags.narrow`).
A cascade cell (`worst_case: cascade`) narrows its images' flags by the cells before it and
attacks the images still robust (`cells._broken_before`); `robustness.worst_case` builds one
model's record once, from its cells' records; the table's `worst_case` rows, the sanity flags,
the indicators and the verdict, and `summary.json` read it, and the run stores it
(`robust_flags.json`, `FILE`) so that `summary.json` is rebuilt from a run's files alone
(`summary.rebuild`).

Per image of `idx` (sorted indices into the run's MNIST test images):
- `robust`: correct clean and under every attack of the row (`attacks`);
- `safe`: also accepted by the rejector every time (end to end; `robust` where nothing rejects);
- `fooled`: accepted and wrong, clean or under at least one of the attacks.
The clean record (`ModelFlags.clean`) is the same under no attack: `robust` is "correct clean".
On an OOD set no class is right, so `fooled` is "accepted under at least one attack"
(`ModelFlags.ood`, not stored).

The file: `{"format": 1, "models": {name: {"clean": R, "worst_case": [R, ...]}}}`, each R with
`norm`, `eps`, `attacks`, `all_images` and its images and flags encoded as `encode_samples` does
(the hex of numpy.packbits over the run's `first` MNIST test images).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FILE = "robust_flags.json"
FORMAT = 1
FIELDS = ("robust", "safe", "fooled")


@dataclass
class RobustFlags:
    norm: str  # linf | l2 | none (clean)
    eps: float
    idx: np.ndarray
    robust: np.ndarray
    safe: np.ndarray
    fooled: np.ndarray
    attacks: tuple[str, ...] = ()
    all_images: bool = False  # the repeat over the attacks that saw every image (`worst_case_<norm>_all_images`)

    @classmethod
    def clean(cls, idx: np.ndarray, correct: np.ndarray, accepted: np.ndarray) -> RobustFlags:
        """The clean images' record: no attack yet."""
        return cls("none", 0.0, idx, correct.copy(), correct & accepted, ~correct & accepted)

    def start(self, norm: str, eps: float, idx: np.ndarray, all_images: bool = False) -> RobustFlags:
        """A new record at (norm, eps) on the images `idx` (a subset of these), from these flags."""
        return RobustFlags(norm, eps, idx, *(self.on(idx, f) for f in FIELDS), (), all_images)

    def on(self, idx: np.ndarray, name: str) -> np.ndarray:
        """The flags `name` on the images `idx` (a subset of self.idx)."""
        return getattr(self, name)[np.searchsorted(self.idx, idx)]

    def narrow(self, label: str, idx: np.ndarray, correct: np.ndarray, accepted: np.ndarray) -> np.ndarray:
        """Attack `label`'s outcome (`correct`, `accepted` per image of `idx`, sorted) narrows the
        flags of the images it saw (the others keep theirs); return which images it broke that were
        robust until now."""
        seen = np.isin(self.idx, idx)
        at = np.searchsorted(idx, self.idx[seen])
        c, a = np.ones(len(self.idx), bool), np.ones(len(self.idx), bool)
        c[seen], a[seen] = correct[at], accepted[at]
        newly = self.robust & ~c
        self.robust, self.safe, self.fooled = self.robust & c, self.safe & c & a, self.fooled | (~c & a)
        self.attacks += (label,)
        return newly

    def metrics(self) -> dict[str, float]:
        """The table's `worst_case` row: robust accuracy, end to end, accepted and wrong, n, attacks."""
        return {"accuracy": self.robust.mean(), "end_to_end_accuracy": self.safe.mean(),
                "accepted_wrong": self.fooled.mean(), "n_samples": len(self.idx), "n_attacks": len(self.attacks)}


@dataclass
class ModelFlags:
    """One model's record: the clean images, the worst case per (norm, eps) (then its repeat on all
    images, where there is one) on MNIST, and per OOD set the images accepted under some attack."""

    clean: RobustFlags
    points: list[RobustFlags] = field(default_factory=list)
    ood: dict[str, list[RobustFlags]] = field(default_factory=dict)

    def main(self) -> dict[tuple[str, float], RobustFlags]:
        """The worst case per (norm, eps) on the images every attack there saw."""
        return {(f.norm, f.eps): f for f in self.points if not f.all_images}


def encode_samples(first: int, idx: np.ndarray, robust: np.ndarray) -> dict:
    """Per-sample outcomes as text: which of the first `first` test images (`images`) and which of
    them are robust (`robust`, in index order), each the hex of numpy.packbits."""
    mask = np.zeros(first, bool)
    mask[idx] = True
    return {"first": int(first), "images": np.packbits(mask).tobytes().hex(),
            "robust": np.packbits(np.asarray(robust, bool)).tobytes().hex()}


def decode_samples(s: dict) -> tuple[np.ndarray, np.ndarray]:
    """(test-set indices, robust per index) of `encode_samples`' output."""
    mask = np.unpackbits(np.frombuffer(bytes.fromhex(s["images"]), np.uint8))[: s["first"]].astype(bool)
    idx = np.flatnonzero(mask)
    return idx, _bits(s["robust"], len(idx))


def _bits(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), np.uint8))[:n].astype(bool)


def _encode(f: RobustFlags, first: int) -> dict:
    s = encode_samples(first, f.idx, f.robust)
    return {"norm": f.norm, "eps": float(f.eps), "attacks": list(f.attacks), "all_images": f.all_images, **s,
            **{k: np.packbits(getattr(f, k)).tobytes().hex() for k in FIELDS[1:]}}


def _decode(d: dict) -> RobustFlags:
    idx, robust = decode_samples(d)
    return RobustFlags(d["norm"], float(d["eps"]), idx, robust, *(_bits(d[k], len(idx)) for k in FIELDS[1:]),
                       tuple(d["attacks"]), bool(d["all_images"]))


def dumps(models: dict[str, ModelFlags], first: int) -> str:
    """The file's text: every model's clean and MNIST worst-case records (not the OOD ones)."""
    doc = {"format": FORMAT, "models": {name: {"clean": _encode(m.clean, first), "worst_case": [_encode(f, first) for f in m.points]}
                                        for name, m in models.items()}}
    return json.dumps(doc, sort_keys=True, indent=1) + "\n"


def read(folder: str | Path) -> dict[str, ModelFlags]:
    """The records of a run's folder (`FILE`)."""
    doc = json.loads((Path(folder) / FILE).read_text(encoding="utf-8"))
    if doc.get("format") != FORMAT:
        raise ValueError(f"{FILE} has format {doc.get('format')!r}, this version reads {FORMAT}")
    return {name: ModelFlags(_decode(m["clean"]), [_decode(d) for d in m["worst_case"]]) for name, m in doc["models"].items()}
