"""An OOD run's cells: each one (model, rejector, attack or none, eps, dataset, split), planned,
keyed, seeded and stored like a classification cell (`attractor_bench.cells`) in the one cell store
(`store.CellStore`, with its integrity record), and computed by the same workers (`parallel.py`).

Kinds of cell (`OODCell.attack`), each storing the rejector's outlier scores of its images (`score`):

- `none`: the images clean; on MNIST's test images also the pipeline's predictions (`pred`), and
  every clean cell holds the rejector's `threshold` (the suite's for a model's own rejector, else
  fitted on MNIST validation images, `OODWorkspace.calibration`: derived inside, deterministically,
  and the fit's images are in the key);
- a score attack (`attacks.SCORE_ATTACKS`), MNIST attacked to be rejected, OOD images to be accepted;
  it depends on the clean cells of its split and rejector (`after`: the bounds of its score model
  read their scores) and its key covers theirs;
- `pgd_ce`: MNIST's test images under the classification PGD (the registry's `pgd`, cross-entropy
  through the pipeline), stored once per (model, eps) as examples every rejector's cell scores
  (`shared`), with their predictions: the accuracy/coverage curves;
- `rejection_aware` and `k_plus_one`: the cross-checks on a model's own fixed-point rejector.

A cell's key holds the versions of the components that compute it (this module's, the score
attacks' where it attacks, the rejector's own: a bump of one rejector recomputes its cells only),
the model (its network and defence: `model_identity`, without its rejector), the rejector's
identity, the attack's budget, eps, the images, the split, the seed (`cells.cell_seed`) and the
keys of the cells it depends on. The rejectors are rebuilt lazily from the model wherever a cell
is computed (`OODWorkspace.rejectors`), so a worker receives the models alone.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from attractor_bench import components
from attractor_bench.attacks import ATTACKS
from attractor_bench.attacks.autoattack_standard import Pipeline
from attractor_bench.attacks.rejection_aware import RejectionAwarePGD
from attractor_bench.cells import Defended, Target, cell_seed, defended_code, seed_everything
from attractor_bench.files import array_fingerprint, key, source_fingerprint
from attractor_bench.plugins import BUILT_IN
from attractor_bench.rejectors import Rejector
from attractor_bench.store import CellStore

from .attacks import SCORE_ATTACKS, budgets, k_plus_one, score_attack
from .rejectors import BATCH, TPR, fit_thresholds, rejectors_for

PGD_CE, CROSS_CHECKS = "pgd_ce", ("rejection_aware", "k_plus_one")


@dataclass
class OODCell:
    """One OOD cell (see the module docstring): `key` in the cell store, `seed` for its generators,
    `after` the cells whose outputs it reads, `shared` the key of the examples it scores (`pgd_ce`)."""

    model: str
    rejector: str
    attack: str
    eps: float
    dataset: str
    split: str
    key: str = ""
    seed: int = 0
    after: tuple["OODCell", ...] = ()
    shared: str | None = None

    @property
    def group(self) -> str:
        """The cells that go to one worker: a (model, rejector, split)'s, whose clean cells come first; the
        `pgd_ce` cells of one (model, eps), which score the same examples."""
        return self.shared or key(model=self.model, rejector=self.rejector, split=self.split)

    @property
    def where(self) -> list:
        return [self.model, self.rejector, self.attack, self.eps, self.dataset, self.split]

    @property
    def label(self) -> str:
        return f"{self.model} {self.rejector} {self.attack} eps {self.eps:g} {self.dataset} ({self.split})"


@dataclass
class OODWorkspace:
    """What computing any OOD cell needs: the suite, its images per split (`test`, `validation`: dataset
    -> `data.Split`), the MNIST validation images the rejectors without a threshold are fitted on, the
    prepared models and their identities (`model_identity`). Pickled once per worker; the rejectors are
    not (rebuilt on first use)."""

    suite: object  # OODSuite
    sets: dict[str, dict]
    calibration: np.ndarray
    prepared: dict[str, Defended]
    identities: dict[str, str]
    images: dict = field(default_factory=dict)  # (split, dataset) -> fingerprint of its images

    def __post_init__(self):
        if not self.images:
            self.images = {(s, ds): array_fingerprint(v.x, v.y if ds == "mnist" else None)
                           for s, sets in self.sets.items() for ds, v in sets.items()}
        self.images["calibration"] = array_fingerprint(self.calibration)

    def rejectors(self, model: str, fitted: bool = True) -> dict[str, Rejector]:
        """Model `model`'s rejectors by name (`rejectors.rejectors_for`): one set per model, built on first use,
        their thresholds fitted on the calibration images the first time a cell is computed (`fitted=False`: to name
        and key the cells, as planning does: a run whose cells are all stored fits none)."""
        built, fitted_for = self.__dict__.setdefault("_rejectors", {}), self.__dict__.setdefault("_fitted", set())
        if model not in built:
            built[model] = {r.name: r for r in rejectors_for(self.prepared[model], None)}
        if fitted and model not in fitted_for:
            fit_thresholds(self.prepared[model], list(built[model].values()), self.calibration)
            fitted_for.add(model)
        return built[model]

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_rejectors", "_fitted")}

    # The workspace protocol of `parallel.py` (a classification run's `cells.Workspace` implements it too).
    @property
    def suites(self) -> tuple:
        """The suites whose outside code a cell may run (`contracts.plugin_errors`): its models' suites."""
        return tuple(self.suite.suites)

    def light(self, job: list[OODCell]) -> list[OODCell]:
        """A job as it travels: OOD cells are plain values already."""
        return job

    def cells(self, light: list[OODCell]) -> list[OODCell]:
        return light

    def compute(self, c: OODCell, store: CellStore) -> tuple[dict[str, np.ndarray], float]:
        """Cell `c` computed and stored (`compute_ood_cell`)."""
        return compute_ood_cell(self, c, store)


def model_identity(d: Defended, spec, info: dict) -> str:
    """A model's OOD identity: its network (`Defended.network_fingerprint`) and its defence (components,
    name, parameters, weights, an outside factory's source), not its rejector (each rejector has its own)."""
    used = [c for c in info["components"] if not c.startswith("rejector")]
    factory = [spec.defence.factory] if spec.defence.origin != BUILT_IN else []
    return key(network=d.network_fingerprint, defence=defended_code(used, *factory), params=info["defence"])


def rejector_identity(ws: OODWorkspace, model: str, r: Rejector) -> dict:
    """What determines a rejector's scores and threshold: its class and its component's version (an
    outside class: its module's source), and its threshold: the model's own, or fitted on the
    calibration images."""
    comps = components.of(type(r))
    code = components.versions(*comps) if comps else source_fingerprint(type(r), inspect.getmodule(type(r)))
    own = r is ws.prepared[model].rejector
    return {"name": r.name, "class": type(r).__qualname__, "code": code,
            "threshold": repr(r.threshold) if own else {"fitted_on": ws.images["calibration"], "tpr": TPR}}


def _attack_identity(ws: OODWorkspace, attack: str) -> dict | None:
    if attack == "none":
        return None
    if attack in (*SCORE_ATTACKS, "k_plus_one"):
        return {"name": attack, "budget": budgets(ws.suite.budgets)[attack],
                "code": components.versions("ood.attacks")}
    return {"name": attack, "code": components.versions(components.attack_component(
        "pgd" if attack == PGD_CE else attack))}


def _code() -> dict[str, int]:
    """The versions of the code every OOD cell runs: `ood.evaluate` and what it requires, without the score
    attacks' code (an attacked cell's attack identity holds it), so that a new version of the score attacks
    recomputes the attacked cells alone, not the clean ones."""
    return {n: v for n, v in components.versions("ood.evaluate").items() if n != "ood.attacks"}


def _cell(ws: OODWorkspace, model: str, r: Rejector, attack: str, eps: float, ds: str, split: str,
          after: tuple = (), shared: str | None = None) -> OODCell:
    seed = cell_seed(ws.suite.seed, "ood", model, r.name, attack, eps, ds, split)
    k = key(stage="ood", code=_code(), model=ws.identities[model],
            rejector=rejector_identity(ws, model, r), attack=_attack_identity(ws, attack), eps=eps, dataset=ds,
            split=split, images=ws.images[(split, ds)], seed=seed, after=[b.key for b in after], shared=shared)
    return OODCell(model, r.name, attack, eps, ds, split, k, seed, tuple(after), shared)


def _examples_key(ws: OODWorkspace, model: str, eps: float) -> str:
    """The stored `pgd_ce` examples of a model at eps (shared by its rejectors' cells)."""
    return key(stage="ood_examples", model=ws.identities[model], attack=_attack_identity(ws, PGD_CE), eps=eps,
               images=ws.images[("test", "mnist")], seed=_examples_seed(ws, model, eps))


def _examples_seed(ws: OODWorkspace, model: str, eps: float) -> int:
    return cell_seed(ws.suite.seed, "ood", model, PGD_CE, eps, "mnist", "test")


def has_cross_checks(ws: OODWorkspace, model: str) -> bool:
    """Whether the cross-checks run on a model: its own rejector is a fixed-point defence's (the attractor's)."""
    own = ws.prepared[model].rejector
    return ws.suite.k_plus_one and own is not None and hasattr(getattr(own, "defence", None), "iterate")


def plan(ws: OODWorkspace) -> dict[str, list[OODCell]]:
    """Every cell of the run, per model: per rejector the clean cells of each split, then its attacked
    cells (the score attacks at every eps on the test images, at the first eps on the validation
    images), the `pgd_ce` cells and the cross-checks."""
    grid = {}
    for model in ws.suite.model_names:
        cells = []
        for r in ws.rejectors(model, fitted=False).values():
            for split, sets in ws.sets.items():
                clean = tuple(_cell(ws, model, r, "none", 0.0, ds, split) for ds in sets)
                cells += clean
                for e in (ws.suite.eps if split == "test" else ws.suite.eps[:1]):
                    cells += [_cell(ws, model, r, a, e, ds, split, clean) for a in ws.suite.attacks for ds in sets]
            cells += [_cell(ws, model, r, PGD_CE, e, "mnist", "test", shared=_examples_key(ws, model, e))
                      for e in ws.suite.eps]
        if has_cross_checks(ws, model):
            own = ws.prepared[model].rejector
            cells += [_cell(ws, model, own, a, e, ds, "test") for e in ws.suite.eps
                      for ds in list(ws.sets["test"])[1:] for a in CROSS_CHECKS]
        grid[model] = cells
    return grid


def _outputs(ws: OODWorkspace, c: OODCell, store: CellStore) -> dict[str, np.ndarray]:
    """The stored outputs of cell `c`, computed first if missing."""
    hit = store.get(c.key)
    return hit[0] if hit is not None else compute_ood_cell(ws, c, store)[0]


def _pgd_examples(ws: OODWorkspace, c: OODCell, store: CellStore) -> tuple[np.ndarray, np.ndarray]:
    """The `pgd_ce` examples of the cell's model and eps and the pipeline's predictions of them (stored once)."""
    hit = store.get(c.shared)
    if hit is not None:
        return hit[0]["x_adv"], hit[0]["pred"]
    d, x, y = ws.prepared[c.model], ws.sets["test"]["mnist"].x, ws.sets["test"]["mnist"].y
    seed_everything(_examples_seed(ws, c.model, c.eps))
    x_adv = ATTACKS["pgd"].build(d.classifiers[Target.PIPELINE], eps=c.eps).generate(x, y).astype(np.float32)
    pred = predict(d, x_adv)
    store.put(c.shared, {"x_adv": x_adv, "pred": pred}, {"cell": [c.model, PGD_CE, c.eps, "mnist", "test"]})
    return x_adv, pred


def predict(d: Defended, x: np.ndarray) -> np.ndarray:
    return d.classifiers[Target.PIPELINE].predict(x, batch_size=BATCH).argmax(1)


class _Logits(torch.nn.Module):
    """The defended pipeline's logits as a module (the classifier half of the K+1 model)."""

    def __init__(self, d: Defended):
        super().__init__()
        self.pipeline = Pipeline(d.classifiers[Target.PIPELINE])

    def forward(self, x):
        return self.pipeline(x)


def _attacked(ws: OODWorkspace, c: OODCell, r: Rejector, x: np.ndarray, clean: list[dict]) -> np.ndarray:
    """The cell's images attacked: by a score attack (its bounds from the outputs of the clean cells it
    depends on, `clean`) or a cross-check."""
    d = ws.prepared[c.model]
    if c.attack == "rejection_aware":
        return RejectionAwarePGD(d.classifiers[Target.PIPELINE], r, eps=c.eps).generate(x)
    if c.attack == "k_plus_one":
        return k_plus_one(_Logits(d), r, x, c.eps, ws.suite.budgets.get("k_plus_one"))
    clean_all = np.concatenate([out["score"] for out in clean])
    direction = "reject" if c.dataset == "mnist" else "accept"
    return score_attack(c.attack, r, x, c.eps, direction, clean_all, c.seed, ws.suite.budgets.get(c.attack))


def compute_ood_cell(ws: OODWorkspace, c: OODCell, store: CellStore) -> tuple[dict[str, np.ndarray], float]:
    """Compute one OOD cell, store it (atomically) and return its outputs and seconds. Every generator
    is seeded from the cell, so its result does not depend on what ran before it or where; the cells
    it depends on are read from the store (computed first if missing: their time is theirs)."""
    clean = [_outputs(ws, b, store) for b in c.after]
    t0 = time.perf_counter()
    r, split = ws.rejectors(c.model)[c.rejector], ws.sets[c.split][c.dataset]
    seed_everything(c.seed)
    out = {}
    if c.attack == "none":
        out["threshold"] = np.array(r.threshold, np.float64)
        if (c.split, c.dataset) == ("test", "mnist"):
            out["pred"] = predict(ws.prepared[c.model], split.x)
        x = split.x
    elif c.attack == PGD_CE:
        x, out["pred"] = _pgd_examples(ws, c, store)
    else:
        x = _attacked(ws, c, r, split.x, clean)
    out["score"] = r.score(x)
    seconds = round(time.perf_counter() - t0, 2)
    store.put(c.key, out, {"seconds": seconds, "cell": c.where})
    return out, seconds
