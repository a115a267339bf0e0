"""The suite schema (attractor_bench/schema.py): its vocabulary is the code's, the JSON Schema it
prints accepts every committed suite and refuses what the validator refuses, and its messages name
the file, the key path and what was expected."""

import dataclasses
from pathlib import Path

import jsonschema
import pytest
import yaml

from attractor_bench import schema
from attractor_bench.config import Target, load_suite
from attractor_bench.data import DATASETS
from attractor_bench.defenses import Backward
from attractor_bench.errors import ConfigError
from attractor_bench.losses import PenaltyMethod, RecReduction
from attractor_bench.models import Activation
from attractor_bench.ood import synthetic
from attractor_bench.ood.attacks import BUDGETS, SCORE_ATTACKS
from attractor_bench.ood.suite import load_ood_suite
from attractor_bench.training import EarlyStopping, TrainConfig

REPO = Path(__file__).resolve().parents[1]
SUITES = sorted((REPO / "suites").glob("*.yaml"))
VALIDATOR = jsonschema.Draft202012Validator(schema.json_schema())


def test_the_vocabulary_is_the_codes():
    """schema.py writes the words out (it imports no torch): each is the code's word."""
    assert schema.TARGETS == tuple(t.value for t in Target)
    assert schema.BACKWARDS == tuple(b.value for b in Backward)
    assert schema.OOD_DATASETS == tuple(d for d in DATASETS if d != "mnist")
    assert schema.SYNTHETIC_SETS == tuple(synthetic.DISPLAY_NAMES)
    assert schema.SCORE_ATTACKS == SCORE_ATTACKS
    budgets = schema.Budgets.model_fields
    assert {a: set(budgets[a].annotation.__args__[0].model_fields) for a in budgets} == \
        {a: set(b) for a, b in BUDGETS.items()}
    assert list(schema.TrainDoc.model_fields) == [f.name for f in dataclasses.fields(TrainConfig)]
    train = schema.json_schema()["$defs"]["TrainDoc"]["properties"]
    for field, enum in (("early_stopping", EarlyStopping), ("output_activation", Activation),
                        ("rec_reduction", RecReduction), ("penalty", PenaltyMethod)):
        assert train[field]["enum"] == [e.value for e in enum], field


def test_the_json_schema_is_valid_and_takes_every_committed_suite():
    jsonschema.Draft202012Validator.check_schema(schema.json_schema())
    assert len(SUITES) >= 10
    for path in SUITES:
        errors = [e.message for e in VALIDATOR.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, (path.name, errors)


GOOD = {"models": {"m": {"preset": "baseline"}, "p": {"preset": "mlp", "defence": {"name": "apudae", "steps": 3}}},
        "attacks": [{"name": "fgsm", "eps": [0.1, "20/255"]}]}
REFUSED = {  # a change to GOOD: what both the JSON Schema and the validator refuse
    "unknown key": {"colour": "red"},
    "a model name that is a path": {"models": {"../m": {"preset": "baseline"}}},
    "no models": {"models": {}},
    "an eps that is text": {"attacks": [{"name": "fgsm", "eps": ["lots"]}]},
    "an eps beyond every norm's range": {"attacks": [{"name": "pgd_l2", "eps": [30]}]},
    "an unknown key of the attractor defence": {"defence": {"name": "attractor", "steps": 3}},
    "both threshold and target TPR": {"rejector": {"threshold": 0.8, "target_tpr": 0.9}},
    "a seed beyond 64 bits": {"seed": 2**64},
    "a device that is none": {"device": "tpu"},
    "an OOD set that is not one": {"data": {"ood": ["svhn"]}},
    "a train override of the wrong type": {"models": {"m": {"preset": "baseline", "train": {"max_epochs": "3"}}}},
}


def test_a_suite_with_another_defence_passes_both(tmp_path):
    assert not list(VALIDATOR.iter_errors(GOOD))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    assert load_suite(path).models[1].defence.params == {"steps": 3}


@pytest.mark.parametrize("case", list(REFUSED))
def test_the_json_schema_refuses_what_the_validator_refuses(tmp_path, case):
    doc = {**GOOD, **REFUSED[case]}
    assert list(VALIDATOR.iter_errors(doc)), case
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=f"^{path}: [a-z]"):
        load_suite(path)


def test_an_ood_suite_is_checked_as_one():
    assert list(VALIDATOR.iter_errors({"models_from": ["micro.yaml"], "eps": [0]}))  # outside (0, 1]
    assert not list(VALIDATOR.iter_errors({"models_from": ["micro.yaml"]}))
    assert list(VALIDATOR.iter_errors({"models_from": ["micro.yaml"], "attacks": [{"name": "fgsm", "eps": [0.1]}]}))


@pytest.mark.parametrize("text, message", [
    ("models_from: [micro.yaml]\neps: 0.1\n", "eps: expected a non-empty list of L-inf budgets, got 0.1."),
    ("models_from: [micro.yaml]\neps: [0]\n", "eps[0]: 0 is outside (0, 1]."),
    ("models_from: [micro.yaml]\nname: ../x\n", "name: suite name '../x' must be 1-100 letters"),
    ("models_from: [micro.yaml]\nseed: -1\n", "seed: must be >= 0, got -1."),
    ("models_from: [micro.yaml]\nbudgets: {pgd: {max_iter: 2.5}}\n", "budgets.pgd.max_iter: expected an integer, got 2.5."),
    ("models_from: [micro.yaml]\nbudgets: {square: {steps: 3}}\n", "budgets.square.steps: unknown key. Allowed here: n_queries."),
    ("models_from: [micro.yaml]\nood: [svhn]\n", "ood[0]: unknown OOD set 'svhn'. Choose one of: fashion_mnist"),
    ("n_test: 5\n", "models_from: missing required key 'models_from'."),
])
def test_ood_suites_have_the_same_messages_as_the_others(tmp_path, text, message):
    (tmp_path / "micro.yaml").write_text((REPO / "suites" / "micro.yaml").read_text())
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_ood_suite(path)
    assert str(e.value).startswith(f"{path}: {message}") and "\n" not in str(e.value)


@pytest.mark.parametrize("change, message", [
    ({"data": False}, "data: expected a mapping, got bool."),  # (not read as an empty mapping)
    ({"models": {"m": {"preset": "attractor", "train": {"init": ["x"]}}}},
     "models.m.train.init: expected text, got ['x']."),  # (a TypeError before)
    ({"models": {"m": {"preset": "baseline"}, 7: {"preset": "baseline"}}},
     "models.7: model name 7 is not text (YAML reads it as int)"),
    ({"defence": {"name": "none", "tol": 0.1}}, "defence.tol: unknown key. Allowed here: none."),
    ({"models": {"m": {"preset": "baseline", "defence": {"tol": "x"}}}},
     "models.m.defence.tol: 'x' is not a number or a fraction such as 20/255."),
    ({"attacks": [{"eps": [0.1]}]}, "attacks[0]: missing required key 'name'."),
    ({"attacks": "fgsm"}, "attacks: expected a non-empty list of attacks, got 'fgsm'."),
])
def test_messages_name_the_key_path(tmp_path, change, message):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **change}))
    with pytest.raises(ConfigError) as e:
        load_suite(path)
    assert str(e.value).startswith(f"{path}: {message}"), str(e.value)
