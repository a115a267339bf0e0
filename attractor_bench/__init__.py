"""attractor-bench: the attractor network of Alipour & SeyyedSalehi as an ART classifier, its
fixed-point defence and OOD rejector, and a harness that benchmarks them.

The public names below are imported on first use (PEP 562), so that importing a light module of
the package (`attractor_bench.cli` for `--help`, `attractor_bench.schema`) does not load torch and ART."""

import importlib
import os
from typing import TYPE_CHECKING

# Same seed, same numbers: MKL may pick different kernels for differently aligned buffers, and
# then the last bits of a matmul depend on where the allocator put it (seen as FGSM sign flips
# between two identical runs in one process). Strict conditional numerical reproducibility
# removes that; it must be set before MKL's first call. A user's own setting wins.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"

_PUBLIC = {"load_model": "api", "load_defence": "api", "make_classifier": "api", "run_suite": "api", "benchmark": "benchmarking",
           "ATTACKS": "attacks", "DEFENCES": "defenses", "AttractorDefence": "defenses", "PearsonRejector": "defenses",
           "MODELS": "models", "AttractorNet": "models"}
__all__ = list(_PUBLIC)

if TYPE_CHECKING:
    from .api import load_defence, load_model, make_classifier, run_suite
    from .attacks import ATTACKS
    from .benchmarking import benchmark
    from .defenses import DEFENCES, AttractorDefence, PearsonRejector
    from .models import MODELS, AttractorNet


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
