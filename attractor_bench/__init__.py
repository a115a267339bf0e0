"""attractor-bench: the attractor network of Alipour & SeyyedSalehi as an ART classifier, its
fixed-point defence and OOD rejector, and a harness that benchmarks them."""

import os

# Same seed, same numbers: MKL may pick different kernels for differently aligned buffers, and
# then the last bits of a matmul depend on where the allocator put it (seen as FGSM sign flips
# between two identical runs in one process). Strict conditional numerical reproducibility
# removes that; it must be set before MKL's first call. A user's own setting wins.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from .attacks import ATTACKS
from .cache import load_defence, load_model
from .classifier import make_classifier
from .defenses import DEFENCES, AttractorDefence, PearsonRejector
from .models import AttractorNet

__version__ = "0.1.0"


def run_suite(*args, **kwargs):
    """Run a suite (see `attractor_bench.runner.run_suite`)."""
    from .runner import run_suite as _run

    return _run(*args, **kwargs)


__all__ = ["AttractorNet", "load_model", "load_defence", "make_classifier", "AttractorDefence", "PearsonRejector", "run_suite", "ATTACKS", "DEFENCES"]
