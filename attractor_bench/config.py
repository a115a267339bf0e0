"""Suite files: YAML (read by `suitefile`: safe loader, bounded, strict) validated into typed configuration.

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
import inspect
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .attacks import ATTACKS, AttackEntry
from .data import DATASETS
from .classifier import TrainingCost
from .defences import DEFENCES, AttractorDefence, Backward, PearsonRejector
from .errors import ConfigError
from .plugins import BUILT_IN, PluginError, resolve
from . import suitefile
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

    def build(self, defence, val_x) -> PearsonRejector | None:
        """The Pearson rejector around the attractor defence (None for any other defence), its
        threshold fitted on the validation images `val_x` where a target TPR is set."""
        if not isinstance(defence, AttractorDefence):
            return None
        rejector = PearsonRejector(defence, threshold=self.threshold or 0.0)
        if self.target_tpr is not None:
            rejector.fit(val_x, target_tpr=self.target_tpr)
        return rejector


# What a gradient attack differentiates: cross-entropy on the logits, or the attacked model's own
# training cost (Eq. 4 for the attractor networks; cross-entropy for the others).
LOSSES = ("cross_entropy", "training")


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


# The largest meaningful budget per norm: the diameter of [0, 1]^784 in that norm.
EPS_MAX = {"linf": 1.0, "l2": 28.0}
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")  # names that become paths: no '/', no leading '.'
SEED_MAX = 2**63 - 1


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


class _Reader:
    """Small typed accessors that raise ConfigError naming the file and key."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {msg}")

    def mapping(self, value: Any, key: str, allowed: set[str] | None, required: set[str] = frozenset()) -> dict:
        """A mapping with only `allowed` keys (None: any) and the `required` ones."""
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}.")
        unknown = sorted(set(map(str, value)) - allowed) if allowed is not None else []
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}" if key else unknown[0],
                            f"unknown key. Allowed here: {', '.join(sorted(allowed))}.")
        missing = sorted(required - set(value))
        if missing:
            raise self.fail(key or missing[0], f"missing required key {missing[0]!r}.")
        return value

    def integer(self, value: Any, key: str, minimum: int = 0, optional: bool = False,
                maximum: int | None = None) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {value!r}.")
        if value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {value}.")
        if maximum is not None and value > maximum:
            raise self.fail(key, f"must be <= {maximum}, got {value}.")
        return value

    def seed(self, value: Any, key: str) -> int:
        """A seed: 0 to 2**63 - 1 (torch's generators take 64 bits; further seeds add small offsets)."""
        return self.integer(value, key, 0, maximum=SEED_MAX)

    def name(self, value: Any, key: str, what: str) -> str:
        """A suite name, model name or attack label: it becomes part of file and folder names."""
        if not isinstance(value, str):
            raise self.fail(key, f"{what} {value!r} is not text (YAML reads it as {type(value).__name__}): quote it, "
                                 "e.g. \"m1\".")
        if len(value) > 100 or not SAFE_NAME.fullmatch(value):
            raise self.fail(key, f"{what} {value!r} must be 1-100 letters, digits, '_', '-' or '.', not starting "
                                 "with '.' (it names files and folders).")
        return value

    def number(self, value: Any, key: str, lo: float, hi: float) -> float:
        if isinstance(value, str):
            m = re.fullmatch(r"\s*([0-9.]+)\s*/\s*([0-9.]+)\s*", value)
            try:
                value = float(m.group(1)) / float(m.group(2)) if m else float(value)
            except (ValueError, ZeroDivisionError):
                raise self.fail(key, f"{value!r} is not a number or a fraction such as 20/255.") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"expected a number, got {value!r}.")
        value = float(value)
        if not lo <= value <= hi:
            raise self.fail(key, f"{value:g} is outside [{lo:g}, {hi:g}].")
        return value

    def registered(self, kind: str, value: Any, key: str):
        """The attack, defence or model called `value` (built in, an entry point, or 'module:callable')."""
        if not isinstance(value, str):
            raise self.fail(key, f"expected the name of {'an' if kind[0] in 'aeiou' else 'a'} {kind} (or a 'module:callable' reference), got {value!r}.")
        try:
            return resolve(kind, value)
        except PluginError as e:
            raise self.fail(key, str(e)) from None

    def choice(self, value: Any, key: str, options) -> str:
        options = list(options)
        if value not in options:
            raise self.fail(key, f"unknown value {value!r}. Choose one of: {', '.join(map(str, options))}.")
        return value


def _train_config(r: _Reader, preset: str, overrides: Any, key: str, earlier: dict[str, TrainConfig]) -> TrainConfig:
    base = PRESETS[preset]
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    overrides = r.mapping(overrides or {}, key, set(fields))
    merged = base.to_dict()
    for k, v in overrides.items():
        sub = f"{key}.{k}"
        if k in ("n_train", "n_val"):
            v = r.integer(v, sub, 1, optional=True)
        elif k in ("max_epochs", "patience", "batch_size", "n_projections"):
            v = r.integer(v, sub, 1)
        elif k == "seed":
            v = r.seed(v, sub)
        elif k == "pretrain":
            if not isinstance(v, bool):
                raise r.fail(sub, f"expected true or false, got {v!r}.")
        elif k in ("weights", "pretrain_lrs"):
            if not isinstance(v, list) or len(v) != 3:
                raise r.fail(sub, "expected a list of three numbers.")
            v = [r.number(e, f"{sub}[{i}]", 0.0, 1e6) for i, e in enumerate(v)]
        elif k == "finetune_lr":
            v = r.number(v, sub, 0.0, 1e6)
        elif k == "init":  # warm start from a model defined earlier in the suite, or none
            if v is not None and v not in earlier:
                raise r.fail(sub, f"expected the name of a model defined above this one ({', '.join(earlier) or 'none'}) "
                                  f"or null, got {v!r}.")
            v = earlier[v].to_dict() if v is not None else None
        else:  # enums
            v = r.choice(v, sub, [e.value for e in type(getattr(base, k))])
        merged[k] = v
    return TrainConfig.from_dict(merged)


def parse_suite(raw: Any, path: Path) -> Suite:
    r = _Reader(path)
    top = r.mapping(raw, "", {"name", "seed", "reference", "device", "data", "models", "defence", "rejector", "attacks",
                              "worst_case"},
                    {"models", "attacks"})
    seed = r.seed(top.get("seed", 0), "seed")
    data = _data(r, top.get("data"))
    defence = _defence(r, top.get("defence"), "defence")
    models = _models(r, top["models"], defence, seed)
    rejector = _rejector(r, top.get("rejector"))
    attacks = _attacks(r, top["attacks"], models)
    reference = top.get("reference")
    if reference is not None:
        reference = r.choice(reference, "reference", ["paper"])
        if paper_attack(attacks) is None:
            raise r.fail("reference", "'paper' compares with the paper's FGSM: add an attack with name fgsm and target network.")
    name = r.name(top.get("name", path.stem), "name" if "name" in top else "name (the file's name)", "suite name")
    device = str(top.get("device", "auto"))
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device.strip().lower()):
        raise r.fail("device", f"{device!r} is not one of auto, cpu, cuda or cuda:<index>.")
    worst = r.choice(top.get("worst_case", "full"), "worst_case", ["full", "cascade"])
    return Suite(name, path, seed, reference, data, models, defence, rejector, attacks, device, worst)


def _data(r: _Reader, raw: Any) -> DataSpec:
    d = r.mapping(raw or {}, "data", {"n_test", "n_ood", "ood"})
    ood = d.get("ood", list(DataSpec.ood))
    if not isinstance(ood, list):
        raise r.fail("data.ood", "expected a list of dataset names.")
    ood = tuple(r.choice(o, f"data.ood[{i}]", [n for n in DATASETS if n != "mnist"]) for i, o in enumerate(ood))
    return DataSpec(r.integer(d.get("n_test"), "data.n_test", 1, True), r.integer(d.get("n_ood"), "data.n_ood", 1, True), ood)


def _models(r: _Reader, raw: Any, defence: DefenceSpec, seed: int) -> tuple[ModelSpec, ...]:
    models_raw = r.mapping(raw, "models", set(map(str, raw)) if isinstance(raw, dict) else set())
    if not models_raw:
        raise r.fail("models", "at least one model is required.")
    models, earlier = [], {}
    for name, spec in models_raw.items():
        models.append(_model(r, r.name(name, f"models.{name}", "model name"), spec, defence, seed, earlier))
        if models[-1].train is not None:
            earlier[name] = models[-1].train
    return tuple(models)


def _model(r: _Reader, name: str, spec: Any, defence: DefenceSpec, seed: int, earlier: dict) -> ModelSpec:
    key = f"models.{name}"
    spec = r.mapping(spec or {}, key, {"preset", "train", "params", "defence"}, {"preset"})
    reg = r.registered("model", spec["preset"], f"{key}.preset")
    model_defence = _defence(r, spec["defence"], f"{key}.defence") if "defence" in spec else defence
    if isinstance(reg.obj, TrainConfig):  # an attractor-network preset, trained and cached here
        if "params" in spec:
            raise r.fail(f"{key}.params", f"preset {reg.name!r} is configured by 'train', not 'params'.")
        overrides = spec.get("train") or {}
        cfg = _train_config(r, reg.name, overrides, f"{key}.train", earlier)
        if "seed" not in overrides:  # an init named from the suite already has the suite's seed
            cfg = dataclasses.replace(cfg, seed=seed) if "init" in overrides else with_seed(cfg, seed)
        return ModelSpec(name, reg.name, cfg, model_defence, origin=reg.origin)
    if "train" in spec:
        what = "is configured by 'params', not 'train'" if isinstance(reg.obj, Recipe) else "is an outside model: give its options under 'params'"
        raise r.fail(f"{key}.train", f"{reg.name!r} {what}.")
    if isinstance(reg.obj, Recipe):  # a comparison model, trained and cached here
        allowed = set(reg.obj.defaults) | set(reg.obj.eval_defaults)
    else:  # an outside model: builder(train=, val=, seed=, **params) -> trained torch.nn.Module
        allowed = _accepted(reg.obj, "train", "val", "seed")
    params = r.mapping(spec.get("params") or {}, f"{key}.params", allowed)
    return ModelSpec(name, reg.name, None, model_defence, reg.obj, dict(params), reg.origin)


def _rejector(r: _Reader, raw: Any) -> RejectorSpec:
    rr = r.mapping(raw or {}, "rejector", {"threshold", "target_tpr"})
    if "threshold" in rr and "target_tpr" in rr:
        raise r.fail("rejector", "give either threshold or target_tpr, not both.")
    if "target_tpr" in rr:
        return RejectorSpec(None, r.number(rr["target_tpr"], "rejector.target_tpr", 1e-6, 1.0))
    return RejectorSpec(r.number(rr.get("threshold", 0.8), "rejector.threshold", -1.0, 1.0), None)


def _attacks(r: _Reader, raw: Any, models: tuple[ModelSpec, ...]) -> tuple[AttackSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise r.fail("attacks", "expected a non-empty list of attacks.")
    attacks, labels = [], set()
    for i, a in enumerate(raw):
        attacks.append(_attack(r, f"attacks[{i}]", a, models, labels))
        labels.add(attacks[-1].label)
    return tuple(attacks)


def _attack(r: _Reader, key: str, a: Any, models: tuple[ModelSpec, ...], labels: set[str]) -> AttackSpec:
    a = r.mapping(a, key, {"name", "label", "eps", "target", "params", "source", "n", "ood", "full", "loss"}, {"name", "eps"})
    reg = r.registered("attack", a["name"], f"{key}.name")
    try:
        entry = AttackEntry.from_callable(reg.obj)
    except ValueError as e:
        raise r.fail(f"{key}.name", str(e)) from None
    name = reg.name
    default = name.rpartition(":")[2].rpartition(".")[2]  # a reference's label: its callable's name
    label = r.name(a.get("label", default), f"{key}.label" if "label" in a else f"{key}.name", "attack label")
    if label in labels or label == "none" or label.startswith(("worst_case", "sanity", "verdict", "model_checks")):
        raise r.fail(f"{key}.label", f"label {label!r} is used twice (or reserved); give each attack a unique label.")
    eps, hi = a["eps"], EPS_MAX[entry.norm]
    if not isinstance(eps, list) or not eps:
        raise r.fail(f"{key}.eps", f"expected a non-empty list of {entry.norm} budgets in [0, {hi:g}] (such as 0.1 or 20/255).")
    eps = tuple(r.number(e, f"{key}.eps[{j}]", 0.0, hi) for j, e in enumerate(eps))
    target = Target(r.choice(a.get("target", "network"), f"{key}.target", [t.value for t in Target]))
    source = _source(r, key, a.get("source"), target, [m.name for m in models])
    _check_target(r, key, name, entry, target, models)
    n = r.integer(a.get("n"), f"{key}.n", 1, optional=True)
    ood = a.get("ood", True)
    if not isinstance(ood, bool):
        raise r.fail(f"{key}.ood", f"expected true or false, got {ood!r}.")
    full = a.get("full", False)
    if not isinstance(full, bool):
        raise r.fail(f"{key}.full", f"expected true or false, got {full!r}.")
    params = r.mapping(a.get("params") or {}, f"{key}.params", entry.allowed_params())
    loss = r.choice(a.get("loss", "cross_entropy"), f"{key}.loss", LOSSES)
    if loss != "cross_entropy" and not entry.uses_loss:
        raise r.fail(f"{key}.loss", f"{name} does not differentiate the classifier's loss, so 'loss: {loss}' would not change "
                                    "it: use it with fgsm, bim, pgd or pgd_l2.")
    return AttackSpec(label, name, eps, target, params, source, n, ood, full, entry, reg.origin, loss)


def _source(r: _Reader, key: str, source: Any, target: Target, model_names: list[str]) -> str | None:
    if target is Target.TRANSFER:
        if source is None:
            raise r.fail(f"{key}.source", "target 'transfer' needs the name of the suite model whose network makes the "
                                          f"examples ({', '.join(model_names)}).")
        return r.choice(source, f"{key}.source", model_names)
    if source is not None:
        raise r.fail(f"{key}.source", "only attacks with target 'transfer' take a source model.")
    return None


def _check_target(r: _Reader, key: str, name: str, entry: AttackEntry, target: Target, models) -> None:
    if entry.needs_rejector and target is not Target.PIPELINE:
        raise r.fail(f"{key}.target", f"{name} differentiates through the unrolled iteration and the rejector: use target 'pipeline'.")
    if entry.needs_rejector and all(m.defence.name != "attractor" for m in models):
        raise r.fail(f"{key}.name", f"{name} attacks the attractor defence's rejector, which no model of this suite has "
                                    "(none has the defence 'attractor'). Remove the attack.")
    if entry.kind != "gradient" and target not in (Target.NETWORK, Target.PIPELINE):
        raise r.fail(f"{key}.target", f"{name} is a black-box attack (it queries predictions only): use target 'pipeline' "
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


def _defence(r: _Reader, raw: Any, key: str) -> DefenceSpec:
    """A `defence` mapping: `name` plus the defence's parameters (checked for the built-in one)."""
    raw = r.mapping(raw or {}, key, None)
    reg = r.registered("defence", raw.get("name", "attractor"), f"{key}.name")
    if reg.name != "attractor" or reg.origin != BUILT_IN:
        given = {k: v for k, v in raw.items() if k != "name"}
        r.mapping(given, key, _accepted(reg.obj))
        return DefenceSpec(reg.name, given, None if reg.origin == BUILT_IN else reg.obj, reg.origin)
    r.mapping(raw, key, {"name", "tol", "max_iter", "backward", "clip"})
    params = dict(DefenceSpec().params)
    if "tol" in raw:
        params["tol"] = r.number(raw["tol"], f"{key}.tol", 1e-12, 1.0)
    if "max_iter" in raw:
        params["max_iter"] = r.integer(raw["max_iter"], f"{key}.max_iter", 0)
    if "backward" in raw:
        params["backward"] = r.choice(raw["backward"], f"{key}.backward", [b.value for b in Backward])
    if "clip" in raw:
        if not isinstance(raw["clip"], bool):
            raise r.fail(f"{key}.clip", f"expected true or false, got {raw['clip']!r}.")
        params["clip"] = raw["clip"]
    return DefenceSpec("attractor", params)


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
