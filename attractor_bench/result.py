"""What a run hands on: `RunResult`, its suite, its table (one row per `COLUMNS`) and metadata.

The runner (`runner.py`) makes it; the files of a run (`report.py`, `summary.py`) are written from
it. It lives here, not in the runner, so that those renderers need nothing of the runner's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .config import Suite

COLUMNS = ["model", "attack", "eps", "dataset", "metric", "value", "kind"]


@dataclass
class RunResult:
    suite: Suite
    table: pd.DataFrame
    meta: dict = field(default_factory=dict)
    # What the plots draw that the table does not hold: per-sample similarity scores of the clean
    # and of one attacked cell per model with a rejector, and one input's attacked iterates.
    figures: dict = field(default_factory=dict)
    # Per model, its robust-flags record (`flags.ModelFlags`: the clean images and the worst case per
    # (norm, eps), image by image), stored with the run (`flags.FILE`); summary.json is made from it.
    robust_flags: dict = field(default_factory=dict)


def rows_of(model: str, attack: str, eps: float, dataset: str, metrics: dict, kind_: str) -> list[dict]:
    """The table's rows (one per metric) of one (model, attack, eps, dataset) and kind."""
    return [dict(model=model, attack=attack, eps=eps, dataset=dataset, metric=k, value=float(v), kind=kind_)
            for k, v in metrics.items()]
