"""One (model, attack, eps, dataset) cell: the unit of work a run plans, computes, stores and reads.

`plan(ws)` lists every cell of a run with its store key, seed and sharing group; `compute_cell`
attacks the cell's images, passes them through the defended pipeline once (`evaluate`) and
stores the per-sample outputs (prediction after the defence, single-pass prediction, the
rejector's outlier scores, iteration counts, perturbation sizes); every metric is computed from those later
(`metrics.cell_metrics`). The same function computes a cell in the main process, in a worker
process or on a Dask worker (`parallel.py`), from a `Workspace` built once per run.

Cache keys follow the numbers. A cell's key covers what computes it and nothing that only
orchestrates or renders: the versions of the components it uses (`attractor_bench.components`:
the cell's own, the attack's, so that a bump of one attack recomputes that attack's cells only,
the model's training, defence and rejector), the weights, parameters, threshold, eps, the
images, the seed and the device kind; not the library versions (recorded with the run).
Choices (recorded in each results README): the attack's labels are the true labels on MNIST and
the model's own predictions on OOD sets (ART's default for y=None).
"""

from __future__ import annotations

import hashlib
import inspect
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from . import components
from .attacks import perturbation_norms, within_budget
from .classifier import TrainingCost, make_classifier
from .config import AttackSpec, Suite, Target
from .defenses import straight_through
from .rejectors import Rejector
from .plugins import BUILT_IN
from .errors import AttractorBenchError
from .files import key, source_fingerprint
from .flags import RobustFlags
from .store import CELL_FORMAT, CellStore

EVAL_BATCH = 1000
# A randomized model's prediction of an image, clean or attacked: the class named by more than half of
# JUDGE_DRAWS draws (NO_MAJORITY where none is: wrong whatever the label), the draws seeded with
# JUDGE_SEED in every cell, so that an attack that changes nothing changes no judgement
# (docs/reliability.md, "Randomized models"). At least 20 draws (issue 38); odd, so right and wrong never tie.
JUDGE_DRAWS, JUDGE_SEED, NO_MAJORITY = 21, 38, -1


def cell_code() -> str:
    """The versions of the components every cell uses (`attractor_bench.components`), not the
    library versions: a run on another torch, ART or numpy is keyed the same."""
    return key(components=components.versions("cell"), format=CELL_FORMAT)


def defended_code(used: list[str], *factories) -> str:
    """The versions of the components a model uses (its training, defence and rejector:
    `components.for_model`), and the source of the given outside factories (a plugin's defence
    factory or model builder: a plugin declares no version)."""
    modules = {inspect.getmodule(f) for f in factories if f is not None} - {None}
    return key(components=components.versions(*used),
               outside=source_fingerprint(*sorted(modules, key=lambda m: m.__name__)) if modules else None)


@dataclass
class Defended:
    """One trained model with its defence, rejector (None unless its defence brings one:
    `defenses.rejector_of`) and the classifiers attacks see (built on first use, and again after unpickling in a worker);
    `fingerprint` identifies all of that for the cell store, `network_fingerprint` the undefended
    network alone (transfer examples are made on it)."""

    model: torch.nn.Module
    defence: object
    rejector: Rejector | None
    fingerprint: str = ""
    network_fingerprint: str = ""
    training_cost: TrainingCost | None = None  # an attractor network's Eq. 4 weights (`loss: training`)

    @property
    def threshold(self) -> float | None:
        return None if self.rejector is None else self.rejector.threshold

    @property
    def classifiers(self) -> dict:
        """The cross-entropy classifier of each target."""
        if getattr(self, "_classifiers", None) is None:
            self._classifiers = {t: self._make(t, None) for t in (Target.NETWORK, Target.PIPELINE, Target.BPDA)}
        return self._classifiers

    def classifier(self, target: Target, loss: str = "cross_entropy"):
        """The classifier an attack on `target` differentiating `loss` sees (the training cost is
        cross-entropy for a model trained on cross-entropy alone)."""
        if loss == "cross_entropy" or self.training_cost is None:
            return self.classifiers[target]
        own = self.__dict__.setdefault("_own_cost", {})
        if target not in own:
            own[target] = self._make(target, self.training_cost)
        return own[target]

    def _make(self, target: Target, cost: TrainingCost | None):
        dev = next(self.model.parameters(), torch.empty(0)).device
        defence = {Target.NETWORK: None, Target.PIPELINE: self.defence, Target.BPDA: straight_through(self.defence)}[target]
        return make_classifier(self.model, defence, device=dev, cost=cost)

    def __getstate__(self) -> dict:  # ART classifiers are rebuilt
        return {k: v for k, v in self.__dict__.items() if k not in ("_classifiers", "_own_cost")}


@contextmanager
def _own_draws(seed: int, device: torch.device):
    """Within the block, the random generators (torch's on the CPU and on `device`, numpy's,
    Python's) start from `seed`; afterwards they are where they were before it."""
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        seed_everything(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def judged(classifier, x: np.ndarray, device: torch.device) -> np.ndarray:
    """A randomized model's predictions of images x: per image the class more than half of
    JUDGE_DRAWS draws name, NO_MAJORITY where no class has a majority (the draws: `_own_draws`)."""
    votes = np.zeros((len(x), classifier.nb_classes), np.int64)
    with _own_draws(JUDGE_SEED, device):
        for _ in range(JUDGE_DRAWS):
            votes[np.arange(len(x)), classifier.predict(x, batch_size=EVAL_BATCH).argmax(1)] += 1
    return np.where(2 * votes.max(1) > JUDGE_DRAWS, votes.argmax(1), NO_MAJORITY)


def _predict(d: Defended, target: Target, x: np.ndarray) -> np.ndarray:
    """The predictions of x through target's classifier: one pass, or `judged` for a randomized model."""
    clf = d.classifiers[target]
    if getattr(d.model, "randomized", False):
        return judged(clf, x, next(d.model.parameters(), torch.empty(0)).device)
    return clf.predict(x, batch_size=EVAL_BATCH).argmax(1)


@torch.no_grad()
def evaluate(d: Defended, x: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample outputs of model `d`'s defended pipeline on images x (N, 1, 28, 28): the
    prediction after the defence, the single-pass prediction (the network alone), and the
    rejector's outputs (`Rejector.outputs`: its outlier score, a single-pass score and iteration
    counts where it has them; NaN scores and 0 iterations without a rejector). A randomized
    model's predictions are the majority of JUDGE_DRAWS draws (`judged`)."""
    n, pred = len(x), _predict(d, Target.PIPELINE, x)
    # without a defence the two are one pipeline: a randomized model's 21 draws are not made twice
    same = d.defence is None and getattr(d.model, "randomized", False)
    out = {"pred": pred, "pred_single": pred.copy() if same else _predict(d, Target.NETWORK, x)}
    if d.rejector is None:
        return {**out, "score": np.full(n, np.nan, np.float32), "score_single": np.full(n, np.nan, np.float32),
                "n_iter": np.zeros(n, np.int64)}
    return {**out, **d.rejector.outputs(x)}


def perturbation_sizes(x: np.ndarray, x_adv: np.ndarray) -> dict[str, np.ndarray]:
    delta = (x_adv - x).reshape(len(x), -1)
    return {"delta_linf": np.abs(delta).max(1), "delta_l2": np.linalg.norm(delta, axis=1)}


def cell_seed(seed: int, *parts) -> int:
    return int.from_bytes(hashlib.sha256(repr((seed, *parts)).encode()).digest()[:4], "little")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def subset(n_total: int, n: int | None, seed: int) -> np.ndarray:
    """The fixed, seeded subset of `n` of `n_total` images (sorted indices). Subsets of different
    sizes are nested (prefixes of one seeded permutation), so every attack's images contain the
    smaller subsets' images."""
    if n is None or n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng([seed, 7]).permutation(n_total)[:n])


def check_budget(label: str, x_adv: np.ndarray, x: np.ndarray, eps: float, norm: str) -> None:
    size = perturbation_norms(x_adv, x, norm).max(initial=0.0)
    if size > eps * (1 + 1e-5) + 1e-6:
        raise AttractorBenchError(
            f"Attack {label} produced a perturbation of {norm} size {size:.5f} > eps {eps:.5f}: "
            "its result cannot be trusted. Check the attack's parameters."
        )


def run_attack(spec: AttackSpec, eps: float, classifier, x: np.ndarray, y: np.ndarray | None, seed: int,
               rejector=None) -> np.ndarray:
    """x attacked by `spec` at `eps` through `classifier` (unbounded for minimal-perturbation attacks).
    Every random generator an attack may draw from is seeded from the cell, so a cell's result
    does not depend on what ran before it (resumed runs equal uninterrupted ones)."""
    return run_reported(spec, eps, classifier, x, y, seed, rejector)[0]


def run_reported(spec: AttackSpec, eps: float, classifier, x: np.ndarray, y: np.ndarray | None, seed: int,
                 rejector=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`run_attack`, and what the attack reported about its run: an attack may leave a `report`
    after `generate`, a dict of integer arrays, per image of x or scalars (standard AutoAttack: which
    of its attacks broke each image, its checks' warnings); {} for the others."""
    seed_everything(seed)
    attack = spec.entry.build(classifier, eps, rejector=rejector, **spec.params)
    with classifier.memoized():  # an input asked again is answered from memory (the same bits)
        x_adv = attack.generate(x, y=y).astype(np.float32)
    return x_adv, dict(getattr(attack, "report", None) or {})


def zero_gradient_share(classifier, x: np.ndarray, y: np.ndarray) -> float:
    """Share of images whose input gradient of the classifier's loss is exactly zero."""
    grads = classifier.loss_gradient(x, np.eye(classifier.nb_classes, dtype=np.float32)[y])
    return float((np.abs(grads).reshape(len(x), -1).max(1) == 0).mean())


@dataclass
class Cell:
    """One (model, attack, eps, dataset) cell: `key` in the cell store, `seed` for its generators,
    `shared` the store key of the examples it starts from when other cells start from them too (a
    transfer attack's examples, a minimal-perturbation attack's run over every eps), else None;
    `group` the cells that go to the same worker: those of one cascade, else those with the same
    `shared` examples."""

    model: str
    attack: AttackSpec | None
    eps: float
    dataset: str
    key: str
    seed: int
    shared: str | None = None
    after: tuple["Cell", ...] = ()  # cascade: the cells before it (clean first); it attacks what they left robust
    chain: str | None = None  # cascade: the cascade it belongs to (its cells go to one worker, in order)

    @property
    def group(self) -> str:
        return self.chain or self.shared or self.key

    @property
    def label(self) -> str:
        return self.attack.label if self.attack else "none"

    @property
    def where(self) -> list:
        """The cell's coordinates, stored in its header."""
        return [self.model, self.label, self.eps, self.dataset]


@dataclass
class Workspace:
    """What computing any cell of a run needs; built once by the main process, and pickled once per
    worker process (`attractor_bench.parallel`) so that workers never train or load models."""

    suite: Suite
    sets: dict
    subsets: dict
    images: dict
    prepared: dict[str, Defended]

    def indices(self, dataset: str, attack: AttackSpec | None) -> np.ndarray:
        """The indices of the images a cell of `attack` on `dataset` attacks."""
        return self.subsets[(dataset, attack.n if attack else None)]

    def labels(self, dataset: str, attack: AttackSpec | None) -> np.ndarray | None:
        """Their labels (MNIST), or None (OOD sets: attacked with the model's own predictions)."""
        return self.sets[dataset].y[self.indices(dataset, attack)] if dataset == "mnist" else None

    def inputs(self, dataset: str, attack: AttackSpec | None) -> np.ndarray:
        """The clean images themselves."""
        return self.sets[dataset].x[self.indices(dataset, attack)]

    # The workspace protocol of `parallel.py` (an OOD run's `OODWorkspace` implements it too).
    @property
    def suites(self) -> tuple:
        """The suites whose outside code a cell may run (`contracts.plugin_errors`)."""
        return (self.suite,)

    def light(self, job: list[Cell]) -> list:
        """A job as plain values (an attack as its index in the suite): what travels per job."""
        index = {id(a): i for i, a in enumerate(self.suite.attacks)}

        def one(c: Cell) -> tuple:  # a cascade cell travels with the cells before it
            return (c.model, None if c.attack is None else index[id(c.attack)], c.eps, c.dataset, c.key, c.seed, c.shared,
                    tuple(one(b) for b in c.after))
        return [one(c) for c in job]

    def cells(self, light: list) -> list[Cell]:
        """The cells of a job sent by `light`."""
        return [Cell(m, None if a is None else self.suite.attacks[a], e, d, k, s, sh, tuple(self.cells(after)))
                for m, a, e, d, k, s, sh, after in light]

    def compute(self, c: Cell, store: CellStore) -> tuple[dict[str, np.ndarray], float]:
        """Cell `c` computed and stored (`compute_cell`)."""
        return compute_cell(self, c, store)


def attack_identity(attack: AttackSpec) -> dict:
    """What determines an attack's examples: its data and its component's version (an outside
    attack: the source of its module, helpers and classes included)."""
    if attack.origin == BUILT_IN:
        code = components.versions(components.attack_component(attack.name))
    else:
        code = source_fingerprint(attack.entry.factory, inspect.getmodule(attack.entry.factory))
    return dict(name=attack.name, origin=attack.origin, params=attack.params, defaults=attack.entry.defaults,
                fixed=attack.entry.fixed, target=attack.target.value, source=attack.source, n=attack.n, loss=attack.loss,
                code=code)


def intermediate_key(ws: Workspace, c: Cell) -> str | None:
    """The stored examples a cell starts from, shared with other cells (None: the cell's own attack)."""
    a = c.attack
    if a is None or c.eps == 0:
        return None
    data_key = ws.images[(c.dataset, a.n)]
    if a.target is Target.TRANSFER:
        s = cell_seed(ws.suite.seed, a.source, a.label, c.eps, c.dataset)
        return key(stage="transfer", model=ws.prepared[a.source].network_fingerprint, attack=attack_identity(a), eps=c.eps,
                   dataset=c.dataset, images=data_key, seed=s)
    if not a.entry.bounded:
        s = cell_seed(ws.suite.seed, c.model, a.label, c.dataset)
        return key(stage="unbounded", model=ws.prepared[c.model].fingerprint, attack=attack_identity(a), dataset=c.dataset,
                   images=data_key, seed=s)
    return None


def datasets(suite: Suite, attack: AttackSpec | None) -> list[str]:
    return ["mnist", *suite.data.ood] if attack is None or attack.ood else ["mnist"]


def applies(attack: AttackSpec, rejects: bool) -> bool:
    """An attack on a model's rejector runs only on the models that have one (`rejects`)."""
    return not attack.entry.needs_rejector or rejects


def points(suite: Suite, rejects: bool) -> list[tuple[AttackSpec | None, float]]:
    """The (attack, eps) points of one model (`rejects`: it has a rejector), clean first: the order of the table."""
    return [(None, 0.0)] + [(a, e) for a in suite.attacks if applies(a, rejects) for e in a.eps]


def plan(ws: Workspace) -> dict[str, list[tuple[AttackSpec | None, float, list[Cell]]]]:
    """Every cell of the run, per model and (attack, eps), MNIST first."""
    grid = {}
    for spec in ws.suite.models:
        d = ws.prepared[spec.name]
        grid[spec.name] = []
        for attack, eps in points(ws.suite, d.rejector is not None):
            cells = []
            for ds in datasets(ws.suite, attack):
                label = attack.label if attack else "none"
                seed = cell_seed(ws.suite.seed, spec.name, label, eps, ds)
                k = key(stage="cell", model=d.fingerprint, attack=None if attack is None else attack_identity(attack),
                        eps=eps, dataset=ds, images=ws.images[(ds, attack.n if attack else None)], seed=seed)
                c = Cell(spec.name, attack, eps, ds, k, seed)
                c.shared = intermediate_key(ws, c)  # a transfer attack's source network, a minimal attack's run
                if c.shared is not None:
                    c.key = key(cell=k, shared=c.shared)
                cells.append(c)
            grid[spec.name].append((attack, eps, cells))
        if ws.suite.worst_case == "cascade":
            chain(ws.suite, grid[spec.name])
    return grid


def chain(suite: Suite, points_: list) -> None:
    """Link one model's cascading MNIST cells: per (norm, eps), after the clean cell and the cells
    that attack every image, the cascading attacks in order of cost (the registry's `cost`, then
    the suite's order), each on the images all cells before it failed on. A cell's key covers the
    keys of the cells before it (they decide its images)."""
    mnist = [(a, e, c) for a, e, cs in points_ for c in cs if c.dataset == "mnist"]
    clean = next(c for a, _, c in mnist if a is None)
    for norm, eps in dict.fromkeys((a.norm, e) for a, e, _ in mnist if a is not None and e > 0):
        here = [(a, c) for a, e, c in mnist if a is not None and a.norm == norm and e == eps]
        before = [clean, *(c for a, c in here if not suite.cascades(a))]
        cascade = sorted((x for x in here if suite.cascades(x[0])), key=lambda x: (x[0].entry.cost, suite.attacks.index(x[0])))
        for a, c in cascade:
            c.after = tuple(before)
            c.key = key(cell=c.key, after=[b.key for b in before])
            before.append(c)
        for c in before[1:] if cascade else ():
            c.chain = key(chain=cascade[0][1].key)


def _adversarial(ws: Workspace, c: Cell, x: np.ndarray, y: np.ndarray | None,
                 store: CellStore) -> tuple[np.ndarray, dict[str, int], dict[str, np.ndarray]]:
    """The cell's attacked images, the passes its attack spent and its report (`run_reported`): its
    own attack, or examples shared with other cells (stored once, with the passes that made them;
    no report)."""
    d, attack, eps = ws.prepared[c.model], c.attack, c.eps

    def stored_examples(compute) -> tuple[np.ndarray, dict[str, int]]:
        hit = store.get(c.shared)
        if hit is not None:
            return hit[0]["x_adv"], {k: int(hit[0][k]) for k in PASSES}
        x_adv, passes = compute()
        store.put(c.shared, {"x_adv": x_adv, **{k: np.array(v) for k, v in passes.items()}})
        return x_adv, passes

    if attack.target is Target.TRANSFER:
        src = ws.prepared[attack.source]
        s = cell_seed(ws.suite.seed, attack.source, attack.label, eps, c.dataset)
        return *stored_examples(lambda: counted(run_attack, attack, eps, src.classifier(Target.NETWORK, attack.loss), x, y, s)), {}
    if attack.entry.bounded:
        (x_adv, report), passes = counted(run_reported, attack, eps, d.classifier(attack.target, attack.loss), x, y, c.seed,
                                          d.rejector)
        return x_adv, passes, report
    s = cell_seed(ws.suite.seed, c.model, attack.label, c.dataset)
    x_adv, passes = stored_examples(lambda: counted(run_attack, attack, eps, d.classifier(attack.target, attack.loss), x, y, s,
                                                    d.rejector))
    return within_budget(x_adv, x, eps, attack.entry.norm), passes, {}


PASSES = ("forward_passes", "backward_passes")


def counted(run, attack, eps, classifier, *args) -> tuple:
    """What run(attack, eps, classifier, *args) returns and the images passed forward and backward through the
    classifier meanwhile (`CheckedClassifier.passes`; zero for a classifier that does not count)."""
    before = dict(getattr(classifier, "passes", {}))
    x_adv = run(attack, eps, classifier, *args)
    after = getattr(classifier, "passes", {})
    return x_adv, {f"{k}_passes": int(after.get(k, 0) - before.get(k, 0)) for k in ("forward", "backward")}


def _broken_before(ws: Workspace, c: Cell, store: CellStore) -> tuple[np.ndarray, dict]:
    """For a cascade cell: which of its images a cell before it already misclassified (its images'
    robust flags, narrowed by each cell before it, clean first), and per image so broken the outputs
    of the first cell that broke it (computed first if not stored)."""
    idx = ws.indices(c.dataset, c.attack)
    ones, first = np.ones(len(idx), bool), {}
    flags = RobustFlags(c.attack.norm, c.eps, idx, ones, ones, ~ones)
    for b in c.after:
        hit = store.get(b.key)
        out_b = hit[0] if hit is not None else compute_cell(ws, b, store)[0]
        idx_b = ws.indices(b.dataset, b.attack)
        new = flags.narrow(b.label, idx_b, out_b["pred"] == ws.labels(b.dataset, b.attack), np.ones(len(idx_b), bool))
        for k in PER_SAMPLE:
            first.setdefault(k, np.zeros(len(idx), out_b[k].dtype))[new] = out_b[k][np.searchsorted(idx_b, idx[new])]
    return ~flags.robust, first


NOT_ATTACKED = -2  # a per-image report's value on the images the cell did not attack


def on_cell_images(report: dict[str, np.ndarray], attacked: np.ndarray) -> dict[str, np.ndarray]:
    """An attack's report on the cell's images: its per-image arrays (on the `attacked` images)
    spread out, NOT_ATTACKED on the others; its scalars as they are."""
    out = {}
    for k, v in report.items():
        v = np.asarray(v)
        if v.ndim == 0:
            out[k] = v
        else:
            out[k] = np.full(len(attacked), NOT_ATTACKED, v.dtype)
            out[k][attacked] = v
    return out


PER_SAMPLE = ("pred", "pred_single", "score", "score_single", "n_iter", "delta_linf", "delta_l2")


def compute_cell(ws: Workspace, c: Cell, store: CellStore) -> tuple[dict[str, np.ndarray], float]:
    """Attack and evaluate one cell, store it (atomically) and return its outputs and seconds. Every
    generator is seeded from the cell, so the result does not depend on what ran before it or where.

    A cascade cell (`c.after`) attacks only the images every cell before it failed on; on the
    others its outputs are those of the first cell that broke the image, so its accuracy is the
    robust accuracy after the cascade up to it, and the worst case over the cells is the one every
    attack on every image gives. `n_attacked`, `forward_passes` and `backward_passes` say what the
    cell's attack spent (the passes of shared examples are counted where they were made)."""
    x, y = ws.inputs(c.dataset, c.attack), ws.labels(c.dataset, c.attack)
    # the cells before a cascade cell first (computed if missing: their time is theirs, in their own headers)
    broken, first = (_broken_before(ws, c, store) if c.after else (np.zeros(len(x), bool), {}))
    t0 = time.perf_counter()
    seed_everything(c.seed)  # randomized models draw from the generators in every cell
    x_adv, passes, report = x, {"forward_passes": 0, "backward_passes": 0}, {}
    todo = ~broken
    if c.attack is not None and c.eps > 0 and todo.any():
        attacked, passes, report = _adversarial(ws, c, x[todo], None if y is None else y[todo], store)
        x_adv = x.copy()
        x_adv[todo] = attacked
        check_budget(c.attack.label, x_adv, x, c.eps, c.attack.entry.norm)
    out = {**evaluate(ws.prepared[c.model], x_adv), **perturbation_sizes(x, x_adv), **on_cell_images(report, todo)}
    for k, v in first.items():
        out[k][broken] = v[broken]
    attacked_n = int(todo.sum()) if c.attack is not None and c.eps > 0 else 0
    out.update({"n_attacked": np.array(attacked_n), **{k: np.array(v) for k, v in passes.items()}})
    seconds = round(time.perf_counter() - t0, 2)
    store.put(c.key, out, {"seconds": seconds, "cell": c.where})
    return out, seconds
