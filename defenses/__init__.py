"""ART-compatible defences, by name. A suite's `defence.name` picks one; tests iterate DEFENCES.

Each entry builds a preprocessor from a trained model and keyword parameters (the suite's
`defence` mapping without `name`); `none` means the undefended single pass.
"""

from __future__ import annotations

from typing import Callable

from .attractor import AttractorDefence, Backward, check_images
from .ood import PearsonRejector, pearson

DEFENCES: dict[str, Callable[..., AttractorDefence]] = {
    "attractor": AttractorDefence,
}

__all__ = ["AttractorDefence", "Backward", "PearsonRejector", "pearson", "check_images", "DEFENCES"]
