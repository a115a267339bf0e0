"""Same inputs, same bits: PyTorch's deterministic algorithms for the duration of a block.

On CPU with more than one thread, the backward pass of advanced indexing (`index_put_` with
accumulation, used by the exact Jacobian penalty) adds in an order that varies from run to run,
so two trainings from one seed differed in the last bits of two weight matrices. The
deterministic implementations remove that. `warn_only`: an operation without a deterministic
implementation (some CUDA kernels) warns instead of failing the run.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def deterministic() -> Iterator[None]:
    before, before_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)
