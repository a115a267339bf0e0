"""Components: the units of code that compute numbers, each with a declared version.

A number is keyed on what computes it, as AutoAttack names its protocol (`version='standard'`)
and a build system keys a target on its declared dependencies: a cell's or a model's cache key
holds its inputs (configuration, weights hash, image bytes hash, seed, device kind) and the
versions of the components it used (`versions(...)`), never the bytes of a source file or the
library versions of the machine. A run records `{component: version}` for what it used
(`used_by_run`), and the leaderboard marks a number stale only when a component it depends on has
a newer version now.

Each component names its roots: modules (all of their definitions), functions and classes (by
`module:qualname`). Its code is the roots and everything they reach inside this package (names in
their bodies and annotations, resolved in their module), stopping at another component's roots
(a dependency, whose version it then also carries). Attacks and recipes are components of their
own, derived from their registries (`attack.<name>` from `AttackEntry.version`, `recipe.<name>`
from `Recipe.version`); the others are declared in `DECLARED` below.

`lock.py` hashes each component's code (normalized: no docstrings, comments, annotations or
message text) into `components.lock.json`, which a test compares: docs/architecture.md says when
to bump a version (numbers change) and when to update the lock after a same-numbers check (they
do not). Outside plugins declare no version: they are keyed by their source, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from . import lock
from .attacks import ATTACKS, AttackEntry
from .defenses import DEFENCES, MODELS_INTERNAL
from .lock import PACKAGE
from .models import MODELS
from .presets import PRESETS
from .recipes import Recipe


@dataclass(frozen=True)
class Component:
    name: str
    version: int
    roots: tuple[str, ...]  # "module" or "module:qualname": its own code (a boundary for other components)
    what: str
    uses: tuple[str, ...] = ()  # further modules hashed with it without owning them (a registry entry's `depends`)


_A = "attractor_bench"
DECLARED: tuple[Component, ...] = (
    Component("data", 1, (f"{_A}.data", f"{_A}.cells:subset", f"{_A}.cells:cell_seed", f"{_A}.cache:Context.training_split"),
              "the datasets as arrays, the validation split, the seeded image subsets and training subsets"),
    Component("determinism", 1, (f"{_A}.determinism", f"{_A}.device"), "deterministic kernels, thread settings, device choice"),
    Component("train.loop", 1, (f"{_A}.early_stopping",), "the epoch loop, its optimizer step and early-stopping rules"),
    Component("net.attractor", 2, (f"{_A}.models.attractor",),  # 2: Chain builds derivative masks only when asked (same bits)
              "the attractor network (784-500-300-300, heads, Chain)"),
    Component("train.attractor", 1, (f"{_A}.training", f"{_A}.losses"),
              "the paper's staged training of the attractor presets and its losses (Eq. 4)"),
    Component("defence.attractor", 2, (f"{_A}.defenses.attractor",),  # 2: the last few moving samples padded to 16 rows
              "the fixed-point iteration as an ART preprocessor"),
    Component("defence.bpda", 1, (f"{_A}.defenses:StraightThrough", f"{_A}.defenses:straight_through",
                                  f"{_A}.defenses:no_defence"), "BPDA with the identity, and no defence"),
    Component("defence.dae", 1, (f"{_A}.defenses.dae",), "the denoising autoencoders inside the purifiers"),
    Component("defence.apudae", 1, (f"{_A}.defenses.apudae",), "APuDAE purification (related paper 003)"),
    Component("defence.feature_dae", 1, (f"{_A}.defenses.feature_dae",), "feature-space DAE purification (related paper 004)"),
    # rejector 1 (issue 37): the one rejector interface (outlier scores, threshold, fit, accept) and MSP, energy,
    # reconstruction similarity as implementations (the OOD runs' scores, before in ood/rejectors.py); 2: MSP and
    # energy share their constructor (FromLogits; the same scores, bumped while no stored number used version 1);
    # 3: every rejector is ART's EvasionDetector again (detect, ART's fit signature; the same scores, bumped while
    # no stored number used version 2); 4: `accept` is the complement of `detect` (one threshold check; a NaN
    # score, which `accept` rejected, is now OOD in `detect` too; the same scores, no stored number used 3)
    Component("rejector", 4, (f"{_A}.rejectors",), "the rejector interface; max softmax, energy, reconstruction similarity"),
    # 2 (issue 37): an implementation of the rejector interface (score -Pearson, threshold -T, its outputs per cell)
    Component("rejector.pearson", 2, (f"{_A}.defenses.ood",), "the attractor's Pearson-similarity rejector"),
    # classifier 2: loss summed over images, batches of at least 16 rows; 3: the training cost's pass without
    # derivative masks (the same bits; issue 38)
    Component("classifier", 3, (f"{_A}.classifier",),
              "the ART classifier around a model and defence, its loss and memo"),
    # 2: a randomized model's predictions are the majority of 21 draws, the same in every cell (issue 38);
    # 3 (issue 37): a cascade cell's images narrowed through the robust-flags record (flags.py); the rejector's
    # outputs through the rejector interface; the attractor's prediction through its pipeline classifier like every model's
    # 4 (issue 37): both workspaces implement parallel.py's workspace protocol (a job as plain values and back, a
    # cell computed) instead of parallel.py testing the workspace's class; the same numbers (suites/micro.yaml and
    # ood_micro.yaml, 1 and 2 workers, gave the same tables as version 3), bumped rather than recorded because no
    # stored number uses 3: the regeneration (issue 38) computes every cell after this change
    Component("cell", 4, (f"{_A}.cells:compute_cell", f"{_A}.cells:evaluate", f"{_A}.cells:Defended", f"{_A}.cells:Workspace",
                          f"{_A}.cells:plan", f"{_A}.cells:chain", f"{_A}.cells:points", f"{_A}.cells:applies",
                          f"{_A}.cells:datasets", f"{_A}.cells:EVAL_BATCH", f"{_A}.attacks:AttackEntry",
                          f"{_A}.attacks:within_budget", f"{_A}.attacks:perturbation_norms", f"{_A}.attacks:NORMS",
                          f"{_A}.store:CELL_FORMAT", f"{_A}.config:Suite.cascades"),
              "one (model, attack, eps, dataset) cell: the images attacked, the cascade's order, the outputs stored"),
    # 2 (issue 37): the one metrics module: pytorch-ood's AUROC, AUPR-IN/OUT, FPR95TPR (OOD positive) from outlier
    # scores for both kinds of run (was: a hand-written AUROC and an ID-positive FPR here, ood.metrics for OOD runs);
    # acceptance is score <= threshold; the threshold fit
    Component("metrics", 2, (f"{_A}.metrics",),
              "accuracies, acceptance, pytorch-ood's OOD metrics, the threshold fit, accuracy/coverage"),
    # 2 (issue 37): computed once per model into the robust-flags record (flags.py), which the run stores
    Component("worst_case", 2, (f"{_A}.robustness",), "the worst case over attacks per image, the sanity flags"),
    Component("flags", 1, (f"{_A}.flags",),  # issue 37
              "the robust-flags record: per image, robust until an attack breaks it (the cascade's and the worst case's)"),
    # 2: clean correctness per image (clean.samples): clean-accuracy ranks by McNemar's test (issue 38)
    # 3 (issue 37): made from the run's files (results.csv, run.json, robust_flags.json); the worst case and clean
    # accuracy read from the robust-flags record, an OOD eps as the suite gave it (not results.csv's 6 digits); the
    # detection AUROC under its one name, ood_AUROC
    Component("summary", 3, (f"{_A}.summary",), "summary.json: worst cases with intervals, per-image outcomes, verdicts"),
    # 2: AutoAttack's own checks and its second seed read; 3 (issue 38): probes on a seeded random sample of the
    # robust images, not the first 16, and the gradient probe reads the classifier's summed loss (no rescaling);
    # 4 (issue 37): the record checks and the verdict read the model's robust-flags record
    Component("verdict", 4, (f"{_A}.indicators",),
              "the attack-failure probes and the reliability verdict"),
    # 2: autoattack_standard's Pipeline pads batches below 16 rows; 3 (issue 37): the model's own rejector and the
    # implementations of the rejector interface (outlier scores)
    # 4 (issue 37): the rejectors can be built unfitted, to name and key an OOD run's cells (the same scores and
    # thresholds: fitted where a cell is computed; bumped while no stored number uses 3)
    # 5: `fit_thresholds`, so that an OOD run builds one set of rejectors per model and fits it in place (the same
    # thresholds and scores: suites/ood_micro.yaml's ood.csv byte-identical; bumped while no stored number uses 4)
    Component("ood.scores", 5, (f"{_A}.ood.rejectors",), "which rejectors an OOD run evaluates for a model"),
    # 2: PGD's loss summed; 3 (issue 37): on outlier scores (directions reject / accept)
    # 4: `budgets`, the one merge of BUDGETS with a suite's overrides (the same budgets; bumped with ood.scores 5)
    Component("ood.attacks", 4, (f"{_A}.ood.attacks",), "PGD, APGD and Square on an OOD score"),
    # 2 (issue 38): the best rejector is chosen on validation images apart from the test images, not on the test
    # sets; autoattack_standard's Pipeline, which its code reaches, pads batches below 16 rows
    # 3 (issue 37): outlier scores (the worst case is the highest ID score, the lowest OOD score)
    # 4 (issue 37): OOD cells (ood/cells.py) in the one cell store, each seeded with cells.cell_seed: the score
    # attacks' random starts and the accuracy/coverage PGD's are drawn from the cell's seed, not the suite's
    # 5 (issue 37): the workspace protocol above (the same numbers); a notice for an older version's <cache>/ood;
    # a clean OOD cell's key no longer holds the score attacks' version (an attacked cell's attack identity does),
    # so a new score attack recomputes the attacked cells only
    # 6: one set of rejectors per model in the workspace (was two: unfitted to plan, fitted to compute), budgets
    # from ood.attacks.budgets (the same numbers; bumped with ood.scores 5)
    Component("ood.evaluate", 6, (f"{_A}.ood.evaluate", f"{_A}.ood.cells", f"{_A}.ood.synthetic",
                                  f"{_A}.ood.report:best_rejectors"),
              "an OOD run's cells, its noise sets and the best-rejector choice on validation images"),
)

# A run uses these whatever its models and attacks (a newer version of one stales the whole run).
RUN_WIDE = ("data", "determinism", "classifier", "cell", "metrics", "worst_case", "flags", "summary", "defence.bpda")
OOD_WIDE = ("data", "determinism", "classifier", "rejector", "ood.scores", "ood.attacks", "metrics", "ood.evaluate")


def attack_component(name: str) -> str:
    return f"attack.{name}"


def recipe_component(name: str) -> str:
    return f"recipe.{name}"


def _registry_components() -> list[Component]:
    out = []
    for name, e in ATTACKS.items():
        out.append(Component(attack_component(name), e.version, (_ref(e.factory),), e.description, _uses(e.depends)))
    for name, r in {**MODELS, **MODELS_INTERNAL}.items():
        out.append(Component(recipe_component(name), r.version, (_ref(r.make), _ref(r.fit)), r.description, _uses(r.depends)))
    return out


def _uses(depends) -> tuple[str, ...]:
    """A registry entry's `depends` but the modules a declared component owns (those are dependencies)."""
    declared = {r for c in DECLARED for r in c.roots}
    return tuple(m for m in depends if m not in declared)


def _ref(obj) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


@lru_cache(maxsize=1)
def components() -> dict[str, Component]:
    """Every component by name (declared, attacks, recipes)."""
    comps = {c.name: c for c in (*DECLARED, *_registry_components())}
    return dict(sorted(comps.items()))


def registered(recipe: Recipe) -> bool:
    """Whether `recipe` is the registries' recipe of its name (else a plugin's: keyed by its source)."""
    return {**MODELS, **MODELS_INTERNAL}.get(recipe.name) == recipe


def _entry_component(obj) -> str | None:
    """The component of a Recipe or AttackEntry object (a network or attack used by name), else None."""
    if isinstance(obj, Recipe):
        return recipe_component(obj.name)
    if isinstance(obj, AttackEntry):
        return next((attack_component(n) for n, e in ATTACKS.items() if e is obj), None)
    return None


@lru_cache(maxsize=1)
def registry() -> lock.Registry:
    """The components with their code worked out (cached until `reset`)."""
    return lock.Registry(components(), _entry_component)


def lock_state(source_of=None) -> dict[str, dict]:
    """{component: {version, hash, requires}} of the code as it is (what components.lock.json records)."""
    return registry().state(source_of)


def reset() -> None:
    """Forget what was worked out from the registries and the code (after a test changes them)."""
    components.cache_clear()
    registry.cache_clear()
    requires.cache_clear()


def current() -> dict[str, int]:
    """{component: version} of the code as it is."""
    return {n: c.version for n, c in components().items()}


@lru_cache(maxsize=None)
def requires(name: str) -> tuple[str, ...]:
    """`name` and the components its code reaches (transitively), sorted."""
    seen, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo += registry().dependencies(n)
    return tuple(sorted(seen))


def versions(*names: str) -> dict[str, int]:
    """{component: version} of `names` and everything they require: what a cache key holds."""
    comps = components()
    out = {}
    for n in names:
        if n not in comps:
            raise KeyError(f"no component {n!r}")
        for r in requires(n):
            out[r] = comps[r].version
    return dict(sorted(out.items()))


def of(obj) -> tuple[str, ...]:
    """The components whose code holds `obj` (a function, class or module of this package); ()
    for code outside the package (a library's, a plugin's)."""
    mod = getattr(obj, "__module__", None) if not hasattr(obj, "__file__") else obj.__name__
    if not (mod or "").startswith(PACKAGE):
        return ()
    qual = getattr(obj, "__qualname__", None)
    return tuple(n for n in components() if (mod, qual) in registry().members(n))


def for_model(preset: str | None, defence: str | None, rejector, origin: str = "built-in",
              defence_origin: str = "built-in") -> list[str]:
    """The components a model under test uses: its training (an attractor preset's, or its recipe)
    and its defence and rejector (a `Rejector`, or a bool read from a record: the attractor's). An
    outside model or defence has none (keyed by its source)."""
    out = []
    if origin == "built-in" and preset in MODELS:
        out.append(recipe_component(preset))
    elif origin == "built-in" and preset in PRESETS:
        out.append("train.attractor")
    if defence_origin == "built-in" and defence in DEFENCES:
        out += list(of(DEFENCES[defence]))
    if isinstance(rejector, bool):
        out += ["rejector.pearson"] if rejector and defence == "attractor" else []
    elif rejector is not None:
        out += list(of(type(rejector)))
    return sorted(set(out))


def used_by_run(model_components: list[str], attack_names: list[str]) -> dict[str, int]:
    """{component: version} a classification run used: the run-wide ones, its models', its attacks'
    and the verdict's."""
    names = [*RUN_WIDE, *model_components, *(attack_component(a) for a in attack_names), "verdict"]
    return versions(*[n for n in names if n in components()])
