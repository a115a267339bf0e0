"""attractor-bench: the attractor network of Alipour & SeyyedSalehi as an ART classifier, its
fixed-point defence and OOD rejector, and a harness that benchmarks them."""

import os

# Same seed, same numbers: MKL may pick different kernels for differently aligned buffers, and
# then the last bits of a matmul depend on where the allocator put it (seen as FGSM sign flips
# between two identical runs in one process). Strict conditional numerical reproducibility
# removes that; it must be set before MKL's first call. A user's own setting wins.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from .api import load_defence, load_model, make_classifier, run_suite
from .attacks import ATTACKS
from .defences import DEFENCES, AttractorDefence, PearsonRejector
from .models import MODELS, AttractorNet

__version__ = "0.1.0"

__all__ = ["AttractorNet", "load_model", "load_defence", "make_classifier", "AttractorDefence", "PearsonRejector",
           "run_suite", "ATTACKS", "DEFENCES", "MODELS"]
