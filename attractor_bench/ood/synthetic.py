"""Synthetic OOD sets, made offline from a seed, as GOOD (Bitterwolf et al. 2020) and Hein et al.
2019 use on MNIST:

- `uniform_noise`: every pixel uniform in [0, 1];
- `smooth_noise`: low-frequency noise, uniform noise blurred by a Gaussian filter of width
  sigma ~ U[1, 2.5] pixels (one per image, scipy.ndimage) and rescaled to span [0, 1].

`load(name, n, seed, part)` returns a `data.Split` of n (N, 1, 28, 28) float32 images with label
-1; the same (name, n, seed, part) gives the same bytes. `part` "test" (the images reported) and
"validation" (the images the best rejector is chosen on) draw from separate streams.
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy.ndimage import gaussian_filter

from attractor_bench.data import Split

DISPLAY_NAMES = {"uniform_noise": "uniform noise", "smooth_noise": "smooth noise"}
SHAPE = (1, 28, 28)


PARTS = ("test", "validation")


def _rng(name: str, seed: int, part: str) -> np.random.Generator:
    words = [seed, zlib.crc32(name.encode())]  # one stream per set and seed
    return np.random.default_rng(words if part == "test" else [*words, PARTS.index(part)])


def load(name: str, n: int, seed: int = 0, part: str = "test") -> Split:
    if name not in DISPLAY_NAMES:
        raise KeyError(f"unknown synthetic set {name!r}; known: {', '.join(DISPLAY_NAMES)}")
    if part not in PARTS:
        raise KeyError(f"unknown part {part!r}; known: {', '.join(PARTS)}")
    rng = _rng(name, seed, part)
    x = rng.uniform(0.0, 1.0, size=(n, *SHAPE))
    if name == "smooth_noise":
        for i, sigma in enumerate(rng.uniform(1.0, 2.5, size=n)):
            img = gaussian_filter(x[i, 0], sigma=sigma, mode="reflect")
            lo, hi = img.min(), img.max()
            x[i, 0] = (img - lo) / (hi - lo) if hi > lo else 0.0
    return Split(x.astype(np.float32), np.full(n, -1, np.int64))
