"""Suite files: YAML (read by `suitefile`: safe loader, bounded, strict), its shape checked by
`schema` (keys, types, ranges, choices), given meaning here as typed configuration: the registered
models, defences and attacks, their parameters, eps per norm, warm starts and transfer sources.

Any error names the file and the key, e.g. `suites/x.yaml: attacks[0].eps[2]: 1.5 is outside
[0, 1]`, and is raised as ConfigError (exit code 2 in the CLI) before anything is computed.

    name: mnist_fgsm                 # optional; defaults to the file name
    seed: 0
    reference: paper                 # optional: show the paper's numbers beside ours
    device: auto                     # optional: auto (CUDA when present), cpu, cuda, cuda:1; --device overrides
    data: {n_test: null, n_ood: null, ood: [fashion_mnist, cifar10_bw]}
    models:
      baseline: {preset: baseline}   # the paper's presets train with its stopping rule (early_stopping: paper)
      attractor: {preset: attractor, train: {max_epochs: 100}}
      attractor_best: {preset: attractor, train: {early_stopping: best}}   # restore the best weights instead
      mine: {preset: "my_pkg.models:build", params: {width: 256}, defence: {name: none}}   # an outside model
    defence: {name: attractor, tol: 0.001, max_iter: 1, backward: unrolled}   # the default of every model
    rejector: {threshold: 0.8}       # or {target_tpr: 0.95}, calibrated on the validation split
    attacks:
      - {name: fgsm, eps: [1/255, 20/255], target: network}
      - {name: fgsm, label: fgsm_own_cost, eps: [20/255], target: network, loss: training}   # the model's training cost
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .attacks import ATTACKS, AttackEntry
from .classifier import TrainingCost
from .defenses import DEFENCES, REJECTORS, rejector_of
from .rejectors import TPR, Rejector
from .errors import ConfigError
from .plugins import BUILT_IN, PluginError, resolve
from . import schema, suitefile
from .recipes import Recipe
from .presets import PRESETS
from .training import TrainConfig, with_seed


class Target(str, Enum):
    """What the attack's gradient sees."""

    NETWORK = "network"  # the trained network, one pass, no iteration (the paper's FGSM)
    PIPELINE = "pipeline"  # the defended classifier: fixed-point iteration, then the head (`defence.backward`)
    BPDA = "bpda"  # the defended classifier with straight-through gradients through the iteration
    TRANSFER = "transfer"  # made on another suite model's network (`source`), applied to this one

    @property
    def white_box(self) -> bool:
        """Gradients of the defended classifier itself (not of a surrogate)."""
        return self in (Target.PIPELINE, Target.BPDA)


@dataclass(frozen=True)
class DataSpec:
    n_test: int | None = None  # MNIST test images (None: all 10,000)
    n_ood: int | None = None  # images per OOD set
    ood: tuple[str, ...] = ("fashion_mnist", "cifar10_bw")


@dataclass(frozen=True)
class DefenceSpec:
    name: str = "attractor"
    # one iteration: the setting chosen on the validation split (results/mnist_fgsm/ABLATION.md)
    params: dict = field(default_factory=lambda: {"tol": 1e-3, "max_iter": 1, "backward": "unrolled"})
    factory: Any = None  # factory(model, **params) -> ART preprocessor or None; None here: the built-in `name`
    origin: str = BUILT_IN

    def build(self, model, context=None):
        """The defence for the trained `model`; a factory taking `context` gets it (data and cache,
        to train the networks it needs once)."""
        factory = self.factory or DEFENCES[self.name]
        try:
            takes_context = "context" in inspect.signature(factory).parameters
        except (TypeError, ValueError):
            takes_context = False
        return factory(model, **self.params, **({"context": context} if takes_context else {}))

    @property
    def may_reject(self) -> bool:
        """Whether a model with this defence can have a rejector: a registered defence that brings one
        (`defenses.REJECTORS`), or an outside defence (known once it is built: `defenses.rejector_of`)."""
        return self.origin != BUILT_IN or DEFENCES.get(self.name) in REJECTORS


@dataclass(frozen=True)
class ModelSpec:
    """A model under test. Built-in presets (`train` set) are attractor networks trained and cached
    here; the comparison models (`builder` a `Recipe`) are trained and cached too; an outside model
    (`builder` a callable) is `builder(train=Split, val=Split, seed=int, **params)` returning a
    trained `torch.nn.Module` that maps (N, 1, 28, 28) images in [0, 1] to logits."""

    name: str
    preset: str
    train: TrainConfig | None
    defence: DefenceSpec = DefenceSpec()
    builder: Any = None
    params: dict = field(default_factory=dict)
    origin: str = BUILT_IN

    def training_cost(self) -> TrainingCost | None:
        """An attractor network's training cost (its Eq. 4 weights; None for networks trained on
        cross-entropy alone: their training cost is the attacks' default loss)."""
        return None if self.train is None else TrainingCost(self.train.weights, self.train.rec_reduction)


@dataclass(frozen=True)
class RejectorSpec:
    threshold: float | None = 0.8
    target_tpr: float | None = None

    def build(self, defence, val_x) -> Rejector | None:
        """The rejector `defence` brings (`defenses.rejector_of`; None: it brings none), its threshold
        fitted on the validation images `val_x` where a target TPR is set or it has none of its own."""
        rejector = rejector_of(defence, None if self.target_tpr is not None else self.threshold)
        if rejector is not None and (self.target_tpr is not None or rejector.threshold is None):
            rejector.fit(val_x, target_tpr=self.target_tpr or TPR)
        return rejector


@dataclass(frozen=True)
class AttackSpec:
    label: str
    name: str
    eps: tuple[float, ...]
    target: Target
    params: dict
    source: str | None = None  # the model whose network makes transfer examples
    n: int | None = None  # a fixed, seeded subset of this many images per dataset (None: all of them)
    ood: bool = True  # also attack the OOD sets (else MNIST only)
    full: bool = False  # with `worst_case: cascade`, still attack every image (its own accuracy is reported)
    entry: AttackEntry | None = None  # what builds it (None: the built-in `name`)
    origin: str = BUILT_IN
    loss: str = "cross_entropy"  # or "training": the model's training cost (attacks with `uses_loss`)

    def __post_init__(self):
        if self.entry is None:
            object.__setattr__(self, "entry", ATTACKS[self.name])

    @property
    def norm(self) -> str:
        return self.entry.norm


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    seed: int
    reference: str | None
    data: DataSpec
    models: tuple[ModelSpec, ...]
    defence: DefenceSpec
    rejector: RejectorSpec
    attacks: tuple[AttackSpec, ...]
    device: str = "auto"
    worst_case: str = "full"  # full: every attack on every image; cascade: each on the images still robust

    def cascades(self, attack: AttackSpec) -> bool:
        """Whether `attack`'s MNIST cells run in the cascade (on the images every earlier attack failed
        on) instead of on every image: in a cascade suite, the bounded attacks on the defended model
        that do not say `full: true` (transfer examples and minimal-perturbation runs are shared
        between cells, so they stay full and come first)."""
        return (self.worst_case == "cascade" and not attack.full and attack.entry.bounded
                and attack.target is not Target.TRANSFER)


def parse_suite(raw: Any, path: Path) -> Suite:
    """The suite document `raw` of file `path`: its shape checked by `schema.SuiteDoc`, then what
    depends on the registries and on the rest of the suite, here."""
    doc = schema.validate(schema.SuiteDoc, raw, path)
    fail = functools.partial(schema.error, path)
    defence = _defence(path, doc.defence, "defence") if doc.defence is not None else DefenceSpec()
    models, earlier = [], {}
    for name, spec in doc.models.items():
        models.append(_model(path, name, spec, defence, doc.seed, earlier))
        if models[-1].train is not None:
            earlier[name] = models[-1].train
    models = tuple(models)
    rejector = doc.rejector or schema.RejectorDoc()
    attacks, labels = [], set()
    for i, a in enumerate(doc.attacks):
        attacks.append(_attack(path, f"attacks[{i}]", a, models, labels))
        labels.add(attacks[-1].label)
    if doc.reference is not None and paper_attack(attacks) is None:
        raise fail("reference", "'paper' compares with the paper's FGSM: add an attack with name fgsm and target network.")
    data = doc.data or schema.DataDoc()
    return Suite(schema.suite_name(doc.name, path), path, doc.seed, doc.reference, DataSpec(data.n_test, data.n_ood, tuple(data.ood)), models,
                 defence, RejectorSpec(None, rejector.target_tpr) if rejector.target_tpr is not None else
                 RejectorSpec(rejector.threshold, None), tuple(attacks), doc.device, doc.worst_case)


def _registered(path: Path, kind: str, value: str, key: str):
    """The attack, defence or model called `value` (built in, an entry point, or 'module:callable')."""
    try:
        return resolve(kind, value)
    except PluginError as e:
        raise schema.error(path, key, str(e)) from None


def _keys(path: Path, given: dict, allowed: set[str] | None, key: str) -> dict:
    """`given`, whose keys must be `allowed` (None: any)."""
    unknown = sorted(set(map(str, given)) - allowed) if allowed is not None else []
    if unknown:
        raise schema.error(path, f"{key}.{unknown[0]}", schema.unknown_key(allowed))
    return dict(given)


def train_config(path: Path, preset: str, overrides: dict, key: str, earlier: dict[str, TrainConfig]) -> TrainConfig:
    """Preset `preset` with `overrides` (the keys a `schema.TrainDoc` gives); `init` names a model of
    `earlier` (defined above in the suite) or is null."""
    merged = PRESETS[preset].to_dict()
    for k, v in overrides.items():
        if k == "init" and v is not None:  # warm start from a model defined earlier in the suite
            if v not in earlier:
                raise schema.error(path, f"{key}.init", f"expected the name of a model defined above this one "
                                                        f"({', '.join(earlier) or 'none'}) or null, got {v!r}.")
            v = earlier[v].to_dict()
        merged[k] = v
    return TrainConfig.from_dict(merged)


def _model(path: Path, name: str, spec: schema.ModelDoc, defence: DefenceSpec, seed: int, earlier: dict) -> ModelSpec:
    key, given = f"models.{name}", spec.model_fields_set
    fail = functools.partial(schema.error, path)
    reg = _registered(path, "model", spec.preset, f"{key}.preset")
    if "defence" in given:  # null: the attractor defence's defaults
        defence = _defence(path, spec.defence, f"{key}.defence") if spec.defence is not None else DefenceSpec()
    if isinstance(reg.obj, TrainConfig):  # an attractor-network preset, trained and cached here
        if "params" in given:
            raise fail(f"{key}.params", f"preset {reg.name!r} is configured by 'train', not 'params'.")
        overrides = spec.train.given() if spec.train is not None else {}
        cfg = train_config(path, reg.name, overrides, f"{key}.train", earlier)
        if "seed" not in overrides:  # an init named from the suite already has the suite's seed
            cfg = dataclasses.replace(cfg, seed=seed) if "init" in overrides else with_seed(cfg, seed)
        return ModelSpec(name, reg.name, cfg, defence, origin=reg.origin)
    if "train" in given:
        what = "is configured by 'params', not 'train'" if isinstance(reg.obj, Recipe) else "is an outside model: give its options under 'params'"
        raise fail(f"{key}.train", f"{reg.name!r} {what}.")
    if isinstance(reg.obj, Recipe):  # a comparison model, trained and cached here
        allowed = set(reg.obj.defaults) | set(reg.obj.eval_defaults)
    else:  # an outside model: builder(train=, val=, seed=, **params) -> trained torch.nn.Module
        allowed = _accepted(reg.obj, "train", "val", "seed")
    params = _keys(path, spec.params or {}, allowed, f"{key}.params")
    return ModelSpec(name, reg.name, None, defence, reg.obj, params, reg.origin)


def _attack(path: Path, key: str, a: schema.AttackDoc, models: tuple[ModelSpec, ...], labels: set[str]) -> AttackSpec:
    fail = functools.partial(schema.error, path)
    reg = _registered(path, "attack", a.name, f"{key}.name")
    try:
        entry = AttackEntry.from_callable(reg.obj)
    except ValueError as e:
        raise fail(f"{key}.name", str(e)) from None
    name = reg.name
    label = a.label or name.rpartition(":")[2].rpartition(".")[2]  # a reference's label: its callable's name
    if schema.name_problem(label, "attack label"):
        raise fail(f"{key}.name", schema.name_problem(label, "attack label"))
    if label in labels or label == "none" or label.startswith(("worst_case", "sanity", "verdict", "model_checks")):
        raise fail(f"{key}.label", f"label {label!r} is used twice (or reserved); give each attack a unique label.")
    for j, e in enumerate(a.eps):  # the range is the norm's
        if schema.outside(e, 0.0, schema.EPS_MAX[entry.norm]):
            raise fail(f"{key}.eps[{j}]", schema.outside(e, 0.0, schema.EPS_MAX[entry.norm]))
    target = Target(a.target)
    source = _source(path, key, a.source, target, [m.name for m in models])
    _check_target(path, key, name, entry, target, models)
    params = _keys(path, a.params or {}, entry.allowed_params(), f"{key}.params")
    if a.loss != "cross_entropy" and not entry.uses_loss:
        raise fail(f"{key}.loss", f"{name} does not differentiate the classifier's loss, so 'loss: {a.loss}' would not "
                                  "change it: use it with fgsm, bim, pgd or pgd_l2.")
    return AttackSpec(label, name, tuple(a.eps), target, params, source, a.n, a.ood, a.full, entry, reg.origin, a.loss)


def _source(path: Path, key: str, source: str | None, target: Target, model_names: list[str]) -> str | None:
    fail = functools.partial(schema.error, path, f"{key}.source")
    if target is Target.TRANSFER and source is None:
        raise fail("target 'transfer' needs the name of the suite model whose network makes the examples "
                   f"({', '.join(model_names)}).")
    if target is Target.TRANSFER and source not in model_names:
        raise fail(f"unknown value {source!r}. Choose one of: {', '.join(model_names)}.")
    if target is not Target.TRANSFER and source is not None:
        raise fail("only attacks with target 'transfer' take a source model.")
    return source


def _check_target(path: Path, key: str, name: str, entry: AttackEntry, target: Target, models) -> None:
    fail = functools.partial(schema.error, path)
    if entry.needs_rejector and target is not Target.PIPELINE:
        raise fail(f"{key}.target", f"{name} differentiates through the defence and its rejector: use target 'pipeline'.")
    if entry.needs_rejector and not any(m.defence.may_reject for m in models):
        raise fail(f"{key}.name", f"{name} attacks a model's rejector, and no model of this suite has one (no defence "
                                  "brings a rejector). Remove the attack.")
    if entry.kind != "gradient" and target not in (Target.NETWORK, Target.PIPELINE):
        raise fail(f"{key}.target", f"{name} is a black-box attack (it queries predictions only): use target 'pipeline' "
                                    "(or 'network' to query the undefended single pass).")


def _accepted(factory, *reserved: str) -> set[str] | None:
    """The keyword parameters a suite may give a callable (None: any, it takes **kwargs)."""
    try:
        sig = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in sig):
        return None
    return {p.name for p in sig if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"model", "context", *reserved}


def _defence(path: Path, doc: schema.AttractorDefenceDoc | schema.OtherDefenceDoc, key: str) -> DefenceSpec:
    """A `defence` mapping: the attractor's parameters over its defaults, or any other defence's
    keyword arguments (checked against its factory's signature)."""
    if isinstance(doc, schema.AttractorDefenceDoc):
        return DefenceSpec("attractor", {**DefenceSpec().params, **{k: v for k, v in doc.given().items() if k != "name"}})
    reg = _registered(path, "defence", doc.name, f"{key}.name")
    given = _keys(path, doc.model_extra, _accepted(reg.obj), key)
    return DefenceSpec(reg.name, given, None if reg.origin == BUILT_IN else reg.obj, reg.origin)


def paper_attack(attacks) -> AttackSpec | None:
    """The attack that plays the paper's FGSM: FGSM on the trained network's single pass."""
    return next((a for a in attacks if a.name == "fgsm" and a.target is Target.NETWORK), None)


def load_suite(path: str | Path) -> Suite:
    """The suite in file `path` (read by `suitefile.read`: bounded, UTF-8, no aliases or duplicate keys)."""
    path = Path(path)
    raw = suitefile.read(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a suite must be a YAML mapping with at least 'models' and 'attacks'.")
    return parse_suite(raw, path)
