"""An image's numbers independent of the batch it is computed in.

A row of a matrix product should not depend on the rows beside it, and on the CPU it does not,
except through the kernel the library picks for the batch's size: with MKL 2024.2 on an AVX-512
AMD EPYC (torch 2.13.0 CPU), batches of fewer than 10 rows at 2 threads (4 at 1 thread) take
another path whose sums round differently (outputs 1e-8 apart in the last bits), while every batch
of 10 rows or more gives each row the same bits wherever it sits (checked for the MLP, Madry's CNN
and the attractor network, forward and input gradient, batches of 10 to 1,000 and permuted rows:
tests/test_classifier.py probes it). So a batch smaller than `MIN_ROWS` is padded with copies of
its last row and the padding's outputs dropped: then a prediction or a gradient is the same bits
in a batch of 1, 7 or 1,000, a remembered answer is the answer recomputation gives, and the attack
batch size is a speed setting only.

>>> out = padded_call(model, x)   # model(x), computed on at least MIN_ROWS rows
"""

from __future__ import annotations

import numpy as np
import torch

MIN_ROWS = 16  # above the 10 rows where this machine's kernels stop depending on the batch, with margin


def pad_rows(x, rows: int = MIN_ROWS):
    """x (numpy array or tensor, (B, ...)) with copies of its last row appended up to `rows` rows
    (x itself when it has that many, or none)."""
    n = len(x)
    if n == 0 or n >= rows:
        return x
    if isinstance(x, torch.Tensor):
        return torch.cat([x, x[-1:].expand(rows - n, *x.shape[1:])])
    return np.concatenate([x, np.repeat(x[-1:], rows - n, axis=0)])


def padded_call(fn, x: torch.Tensor, rows: int = MIN_ROWS) -> torch.Tensor:
    """fn(x) computed on x padded to at least `rows` rows, the padding's rows dropped."""
    return fn(pad_rows(x, rows))[: len(x)]


def chunk_padding(n: int, batch_size: int, rows: int = MIN_ROWS) -> int:
    """How many rows to append to n rows so that none of the chunks of `batch_size` (the last one
    included) has fewer than `rows` rows; `batch_size` is at least `rows`."""
    tail = n % batch_size
    return rows - tail if 0 < tail < rows else 0
