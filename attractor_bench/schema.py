"""The suite files' schema: what a suite document may hold, as pydantic models, for the
classification suites (`SuiteDoc`, given meaning by `config`) and the OOD suites (`OODSuiteDoc`,
`ood/suite.py`), their common parts defined once; `json_schema()` is one JSON Schema for both
kinds (`attractor-bench schema`, for editors). (No `from __future__ import annotations`: pydantic
reads the annotations.)

It checks the document's shape: keys, types, ranges and choices. What depends on the registries
(a model preset, an attack's name, parameters and norm) or on the rest of the suite (warm starts,
transfer sources, labels used once) is checked by `config` after it, with messages of the same
form: `suites/x.yaml: attacks[0].eps[2]: 1.5 is outside [0, 1].` (`error`). The file is read by
`suitefile` (bounded, strict) before any of this sees it.

This module imports neither torch nor the modules that give the words meaning, so that
`attractor-bench schema` and `validate --json` start fast: the vocabulary below is written out,
and tests/test_schema.py checks every word against the code that defines it.
"""

import re
from pathlib import Path
from typing import Annotated, Any, Callable, Union

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, PlainValidator, Tag, ValidationError,
                      WithJsonSchema, model_validator)
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from pydantic_core import PydanticCustomError

from .errors import ConfigError

# ----------------------------------------------------------------------------------- the vocabulary

TARGETS = ("network", "pipeline", "bpda", "transfer")  # config.Target
LOSSES = ("cross_entropy", "training")  # what a gradient attack differentiates (the attacks' `loss`)
OOD_DATASETS = ("fashion_mnist", "cifar10_bw")  # data.DATASETS but mnist
SYNTHETIC_SETS = ("uniform_noise", "smooth_noise")  # ood.synthetic.DISPLAY_NAMES
SCORE_ATTACKS = ("pgd", "apgd", "square")  # ood.attacks.SCORE_ATTACKS
BACKWARDS = ("unrolled", "bpda")  # defenses.Backward
# The largest meaningful budget per norm: the diameter of [0, 1]^784 in that norm.
EPS_MAX = {"linf": 1.0, "l2": 28.0}
SEED_MAX = 2**63 - 1  # torch's generators take 64 bits; further seeds add small offsets
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")  # names that become paths: no '/', no leading '.'
_FRACTION = re.compile(r"\s*([0-9.]+)\s*/\s*([0-9.]+)\s*")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


# ---------------------------------------------------------------------------------- the messages

def error(path: Path, key: str, message: str) -> ConfigError:
    """The one form of a suite file's error: file, key path, what was expected."""
    return ConfigError(f"{path}: {key}: {message}")


def unknown_key(allowed) -> str:
    return f"unknown key. Allowed here: {', '.join(sorted(allowed)) or 'none'}."


def outside(value: float, lo: float, hi: float, open_lo: bool = False) -> str | None:
    """The message for a number outside [lo, hi] ((lo, hi] with `open_lo`), else None."""
    if (lo < value <= hi) if open_lo else (lo <= value <= hi):
        return None
    return f"{value:g} is outside {'(' if open_lo else '['}{lo:g}, {hi:g}]."


def name_problem(value: Any, what: str) -> str | None:
    """What is wrong with a suite name, model name or attack label (they name files and folders)."""
    if not isinstance(value, str):
        return (f"{what} {value!r} is not text (YAML reads it as {type(value).__name__}): quote it, "
                "e.g. \"m1\".")
    if len(value) > 100 or not SAFE_NAME.fullmatch(value):
        return (f"{what} {value!r} must be 1-100 letters, digits, '_', '-' or '.', not starting with '.' "
                "(it names files and folders).")
    return None


def suite_name(given: str | None, path: Path) -> str:
    """A suite's name: its `name` (checked by the schema), else its file's name (checked here)."""
    if given is None and name_problem(path.stem, "suite name"):
        raise error(path, "name (the file's name)", name_problem(path.stem, "suite name"))
    return path.stem if given is None else given


def _invalid(message: str, **ctx: Any) -> PydanticCustomError:
    return PydanticCustomError("suite", "{message}", {"message": message, **ctx})


# pydantic's own checks (types, bounds, lengths) in this project's words
_WORDS = {
    "int_type": "expected an integer, got {input!r}.",
    "bool_type": "expected true or false, got {input!r}.",
    "string_type": "expected text, got {input!r}.",
    "dict_type": "expected a mapping, got {kind}.",
    "model_type": "expected a mapping, got {kind}.",
    "greater_than_equal": "must be >= {ge}, got {input}.",
    "less_than_equal": "must be <= {le}, got {input}.",
}


def _words(e: dict) -> str:
    ctx = e.get("ctx") or {}
    if "message" in ctx:
        return ctx["message"]
    template = _WORDS.get(e["type"])
    if template is None:
        return e["msg"] + "."
    return template.format(input=e.get("input"), kind=type(e.get("input")).__name__, **ctx)


def _key_path(raw: Any, loc: tuple) -> str:
    """`attacks[0].eps[2]`: the error's location in the document (list indices in brackets, mapping
    keys after dots; pydantic's markers of dict keys and union branches left out)."""
    parts, node = [], raw
    for step in loc:
        if isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            parts.append(f"[{step}]")
            node = node[step]
        elif isinstance(node, dict) and step in node:
            parts.append(f".{step}")
            node = node[step]
    return "".join(parts).lstrip(".")


def validate(model: type[BaseModel], raw: Any, path: Path, at: str = "") -> Any:
    """`raw` (a YAML document, or a part of one at key path `at`) as `model`; the first problem as
    ConfigError otherwise."""
    try:
        return model.model_validate(raw)
    except ValidationError as ex:
        e = ex.errors(include_url=False)[0]
        ctx = e.get("ctx") or {}
        key = ".".join(k for k in (at, _key_path(raw, e["loc"]), ctx.get("key", "")) if k) or ctx.get("fallback", "")
        raise error(path, key, _words(e)) from None


# ------------------------------------------------------------------------------------ value types

def _checked(check: Callable[[Any], Any], schema: dict) -> Any:
    """A value that `check` validates (returning it, or raising _invalid with the message) and that
    `schema` describes in the JSON Schema."""
    return Annotated[Any, PlainValidator(check), WithJsonSchema(schema)]


def list_of(item: Any, expected: str, min_length: int = 1, max_length: int | None = None) -> Any:
    """A list of `item`s, `min_length` to `max_length` long; `expected` says so in a message."""

    def check(value: Any) -> list:
        if not isinstance(value, list) or not min_length <= len(value) <= (max_length or len(value)):
            raise _invalid(f"expected {expected}, got {value!r}.")
        return value

    return Annotated[list[item], BeforeValidator(check), Field(min_length=min_length, max_length=max_length)]


def _to_float(value: Any) -> float:
    """A number, or a fraction such as 20/255, as a float."""
    if isinstance(value, str):
        m = _FRACTION.fullmatch(value)
        try:
            value = float(m.group(1)) / float(m.group(2)) if m else float(value)
        except (ValueError, ZeroDivisionError):
            raise _invalid(f"{value!r} is not a number or a fraction such as 20/255.") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(f"expected a number, got {value!r}.")
    try:
        return float(value)
    except OverflowError:
        raise _invalid(f"expected a number a float can hold, got an integer of {len(str(value))} digits.") from None


def _number_schema(lo: float, hi: float, open_lo: bool = False) -> dict:
    bound = {"exclusiveMinimum" if open_lo else "minimum": lo, "maximum": hi}
    return {"anyOf": [{"type": "number", **bound}, {"type": "string", "pattern": r"^\s*[0-9.]+\s*(/\s*[0-9.]+\s*)?$",
                                                    "description": "a fraction such as 20/255"}]}


def number(lo: float, hi: float, open_lo: bool = False) -> Any:
    """A number in [lo, hi] ((lo, hi] with `open_lo`), or a fraction such as 20/255."""

    def check(value: Any) -> float:
        value = _to_float(value)
        problem = outside(value, lo, hi, open_lo)
        if problem:
            raise _invalid(problem)
        return value

    return _checked(check, _number_schema(lo, hi, open_lo))


def one_of(*options: str, what: str = "value") -> Any:
    def check(value: Any) -> str:
        if value not in options:
            raise _invalid(f"unknown {what} {value!r}. Choose one of: {', '.join(options)}.")
        return value

    return _checked(check, {"enum": list(options)})


def safe_name(what: str) -> Any:
    """A suite name, model name or attack label."""

    def check(value: Any) -> str:
        problem = name_problem(value, what)
        if problem:
            raise _invalid(problem)
        return value

    return _checked(check, {"type": "string", "pattern": f"^{SAFE_NAME.pattern}$", "maxLength": 100})


def registered(kind: str, schema: dict | None = None) -> Any:
    """The name of a registered model, defence or attack, or a 'module:callable' reference (looked
    up by `config`)."""

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _invalid(f"expected the name of {'an' if kind[0] in 'aeiou' else 'a'} {kind} (or a "
                           f"'module:callable' reference), got {value!r}.")
        return value

    return _checked(check, {"type": "string", **(schema or {}),
                            "description": f"a registered {kind} (attractor-bench list) or 'module:callable'"})


def _device(value: Any) -> str:
    if not isinstance(value, str) or not _DEVICE.fullmatch(value.strip().lower()):
        raise _invalid(f"{value!r} is not one of auto, cpu, cuda or cuda:<index>.")
    return value


Count = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
Device = _checked(_device, {"type": "string", "pattern": r"^\s*([Aa][Uu][Tt][Oo]|[Cc][Pp][Uu]|[Cc][Uu][Dd][Aa](:\d+)?)\s*$"})
Three = list_of(number(0.0, 1e6), "a list of three numbers", 3, 3)
# an attack's budgets: their range depends on the attack's norm (EPS_MAX), which `config` checks
Eps = list_of(_checked(_to_float, _number_schema(0.0, max(EPS_MAX.values()))),
              "a non-empty list of budgets (L-inf in [0, 1], L2 in [0, 28]; such as 0.1 or 20/255)")


# ------------------------------------------------------------------------------------ the models

class Doc(BaseModel):
    """A mapping of a suite document: only its own keys (the message lists them), its required
    ones first, values of exactly their types (YAML's, no coercion)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        allowed = {f.alias or n for n, f in cls.model_fields.items()}
        unknown = sorted(set(map(str, value)) - allowed)
        if unknown and cls.model_config.get("extra") == "forbid":
            raise _invalid(unknown_key(allowed), key=unknown[0])
        missing = sorted(n for n, f in cls.model_fields.items() if f.is_required() and n not in value)
        if missing:
            raise _invalid(f"missing required key {missing[0]!r}.", fallback=missing[0])
        return value

    def given(self) -> dict:
        """The keys the document gives (not the defaults), as plain values."""
        return self.model_dump(exclude_unset=True)


class DataDoc(Doc):
    n_test: Count | None = Field(None, description="MNIST test images (the first n); null: all 10,000")
    n_ood: Count | None = Field(None, description="images per OOD set; null: all")
    ood: list_of(one_of(*OOD_DATASETS), "a list of dataset names", 0) = list(OOD_DATASETS)


class TrainDoc(Doc):
    """Overrides of an attractor preset's training (attractor_bench.training.TrainConfig)."""

    weights: Three = Field(None, description="a1 rec, a2 eigen, a3 cls of Eq. 4")
    n_train: Count | None = None
    n_val: Count | None = None
    pretrain: bool = None
    pretrain_lrs: Three = None
    finetune_lr: number(0.0, 1e6) = None
    batch_size: Count = None
    max_epochs: Count = None
    patience: Count = None
    early_stopping: one_of("best", "paper") = None
    output_activation: one_of("relu", "sigmoid", "linear") = None
    rec_reduction: one_of("mean", "sum") = None
    penalty: one_of("exact", "estimate") = None
    n_projections: Count = None
    seed: Seed = None
    init: str | None = Field(None, description="a model defined above this one, whose weights start this one")


class AttractorDefenceDoc(Doc):
    """The attractor defence: the fixed-point iteration (attractor_bench.defenses.AttractorDefence)."""

    name: one_of("attractor") = "attractor"
    tol: number(1e-12, 1.0) = None
    max_iter: Annotated[int, Field(ge=0)] = None
    backward: one_of(*BACKWARDS) = None
    clip: bool = None


class OtherDefenceDoc(Doc):
    """Any other defence: its factory's keyword arguments (checked against its signature)."""

    model_config = ConfigDict(extra="allow")
    name: registered("defence", {"not": {"const": "attractor"}})


def _defence_kind(value: Any) -> str:
    return "attractor" if not isinstance(value, dict) or value.get("name", "attractor") == "attractor" else "other"


Defence = Annotated[Union[Annotated[AttractorDefenceDoc, Tag("attractor")], Annotated[OtherDefenceDoc, Tag("other")]],
                    Discriminator(_defence_kind)]


class ModelDoc(Doc):
    preset: registered("model")
    train: TrainDoc | None = Field(None, description="attractor presets only")
    params: dict[str, Any] | None = Field(None, description="comparison and outside models only")
    defence: Defence | None = Field(None, description="this model's defence (default: the suite's)")


class RejectorDoc(Doc):
    threshold: number(-1.0, 1.0) = 0.8
    target_tpr: number(1e-6, 1.0) = Field(None, description="calibrate the threshold on the validation split")

    @model_validator(mode="after")
    def _one(self) -> "RejectorDoc":
        if {"threshold", "target_tpr"} <= self.model_fields_set:
            raise _invalid("give either threshold or target_tpr, not both.")
        return self

    model_config = ConfigDict(json_schema_extra={"not": {"required": ["threshold", "target_tpr"]}})


class AttackDoc(Doc):
    name: registered("attack")
    eps: Eps = Field(description="budgets: L-inf in [0, 1], L2 in [0, 28]")
    label: safe_name("attack label") = None
    target: one_of(*TARGETS) = "network"
    source: str | None = Field(None, description="target transfer: the suite model whose network makes the examples")
    n: Count | None = None
    ood: bool = True
    full: bool = False
    params: dict[str, Any] | None = None
    loss: one_of(*LOSSES) = "cross_entropy"


def _at_least_one_model(value: dict) -> dict:
    if not value:
        raise _invalid("at least one model is required.")
    return value


class SuiteDoc(Doc):
    """A suite: models, the attacks on them, the data (attractor-bench run)."""

    models: Annotated[dict[safe_name("model name"), ModelDoc], AfterValidator(_at_least_one_model),
                      Field(json_schema_extra={"minProperties": 1, "additionalProperties": False})]
    attacks: list_of(AttackDoc, "a non-empty list of attacks")
    name: safe_name("suite name") = Field(None, description="default: the file's name")
    seed: Seed = 0
    reference: one_of("paper") | None = None
    device: Device = "auto"
    worst_case: one_of("full", "cascade") = "full"
    data: DataDoc | None = None
    defence: Defence | None = None
    rejector: RejectorDoc | None = None


class PgdBudget(Doc):
    max_iter: Count = None
    eps_step_ratio: number(0.0, 1e6, open_lo=True) = None


class ApgdBudget(Doc):
    n_iter: Count = None


class SquareBudget(Doc):
    n_queries: Count = None


class Budgets(Doc):
    """Overrides of the score attacks' budgets (attractor_bench.ood.attacks.BUDGETS)."""

    pgd: PgdBudget | None = None
    apgd: ApgdBudget | None = None
    square: SquareBudget | None = None
    k_plus_one: PgdBudget | None = None


class OODSuiteDoc(Doc):
    """An OOD suite: the models of other suites, OOD detection under attack (attractor-bench ood)."""

    models_from: list_of(str, "a non-empty list of suite files") = Field(description="suite files beside this one")
    models: list_of(str, "a non-empty list of model names") | None = Field(None, description="only these (default: all)")
    name: safe_name("suite name") = Field(None, description="default: the file's name")
    n_test: Count = 1000
    n_ood: Count = 1000
    n_validation: Count | None = Field(None, description="images per set the best rejector is chosen on (default: n_ood / 4, at most 250)")
    ood: list_of(one_of(*OOD_DATASETS, *SYNTHETIC_SETS, what="OOD set"), "a non-empty list of OOD sets") = \
        [*OOD_DATASETS, *SYNTHETIC_SETS]
    eps: list_of(number(0.0, EPS_MAX["linf"], open_lo=True), "a non-empty list of L-inf budgets") = [0.1]
    attacks: list_of(one_of(*SCORE_ATTACKS, what="score attack"), "a non-empty list of score attacks") = \
        list(SCORE_ATTACKS)
    k_plus_one: bool = True
    seed: Seed = 0
    budgets: Budgets | None = None


class _Generate(GenerateJsonSchema):
    """The JSON Schema without `default: null` (a key left out is the same as no default)."""

    def default_schema(self, schema):
        if schema.get("default", ...) is None:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


def json_schema() -> dict:
    """One JSON Schema for both kinds of suite file: an OOD suite when it has `models_from`."""
    refs, defs = models_json_schema([(SuiteDoc, "validation"), (OODSuiteDoc, "validation")],
                                    ref_template="#/$defs/{model}", schema_generator=_Generate)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "attractor-bench suite",
            "description": "A suite file (attractor-bench run), or an OOD suite (attractor-bench ood) when it has "
                           "models_from.",
            "type": "object", "if": {"required": ["models_from"]}, "then": refs[(OODSuiteDoc, "validation")],
            "else": refs[(SuiteDoc, "validation")], **defs}
