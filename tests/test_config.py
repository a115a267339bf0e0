import dataclasses
from pathlib import Path

import pytest
import yaml

from attractor_bench.config import Target, load_suite
from attractor_bench.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
GOOD = {
    "seed": 1,
    "models": {"base": {"preset": "baseline", "train": {"n_train": 100, "max_epochs": 1}}},
    "attacks": [{"name": "fgsm", "eps": [0.1, "20/255"]}],
}


def write(tmp_path, doc, name="suite.yaml"):
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return p


def test_committed_suites_are_valid():
    from attractor_bench.ood.suite import load_ood_suite
    for path in sorted((REPO / "suites").glob("*.yaml")):
        if "models_from" in yaml.safe_load(path.read_text()):  # an OOD suite (attractor-bench ood)
            assert load_ood_suite(path).suites, path
        else:
            assert load_suite(path).attacks, path


def test_good_suite_parses(tmp_path):
    s = load_suite(write(tmp_path, GOOD))
    assert s.name == "suite" and s.seed == 1
    assert s.attacks[0].eps == (0.1, pytest.approx(20 / 255))
    assert s.attacks[0].target is Target.NETWORK
    m = s.models[0]
    assert m.train.n_train == 100 and m.train.max_epochs == 1 and m.train.weights == (0.99, 0.0, 0.01)
    assert m.train.seed == 1  # the suite seed reaches the model


def test_warm_start_from_an_earlier_model(tmp_path):
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    doc["models"] = {"base": {"preset": "baseline", "train": {"n_train": 10}},
                     "full": {"preset": "attractor_full", "train": {"max_epochs": 2}},
                     "mine": {"preset": "attractor", "train": {"init": "base"}}}
    s = load_suite(write(tmp_path, doc))
    base, full, mine = (m.train for m in s.models)
    assert full.init.seed == 1 and full.init.n_train == 50_000  # the preset's init, with the suite's seed
    assert mine.init == base


def test_attack_keys_parse(tmp_path):
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    doc["attacks"] = [{"name": "pgd", "label": "tr", "eps": [0.1], "target": "transfer", "source": "base", "n": 50, "ood": False},
                      {"name": "deepfool", "eps": [1.5, 3], "target": "pipeline"}]
    tr, df = load_suite(write(tmp_path, doc)).attacks
    assert (tr.target, tr.source, tr.n, tr.ood, tr.norm) == (Target.TRANSFER, "base", 50, False, "linf")
    assert (df.eps, df.norm, df.n, df.ood) == ((1.5, 3.0), "l2", None, True)


def test_readings_of_the_paper_parse(tmp_path):
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    doc["models"]["best"] = {"preset": "attractor", "train": {"early_stopping": "best"}}
    doc["attacks"].append({"name": "pgd", "label": "own", "eps": [0.1], "loss": "training"})
    s = load_suite(write(tmp_path, doc))
    base, best = s.models
    # the paper's presets train with its stopping rule unless a suite says otherwise
    assert base.train.early_stopping.value == "paper" and best.train.early_stopping.value == "best"
    assert base.train.key() != dataclasses.replace(base.train, early_stopping=best.train.early_stopping).key()
    assert [a.loss for a in s.attacks] == ["cross_entropy", "training"]


def test_the_training_cost_is_refused_for_a_sigmoid_output_before_anything_trains(tmp_path):
    """L_eigen, left out of `loss: training`, has an input gradient through a sigmoid output."""
    from attractor_bench.runner import run_suite
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    doc["models"]["curved"] = {"preset": "attractor", "train": {"output_activation": "sigmoid"}}
    doc["attacks"].append({"name": "fgsm", "label": "own", "eps": [0.1], "loss": "training"})
    with pytest.raises(ConfigError, match=r"through a sigmoid output \(curved: train.output_activation: sigmoid\)"):
        run_suite(load_suite(write(tmp_path, doc)), data_root=tmp_path / "no-data", cache_dir=tmp_path / "cache",
                  download=False)
    assert not (tmp_path / "cache").exists()
    doc["attacks"][-1]["loss"] = "cross_entropy"  # the same models attacked on cross-entropy pass the check
    from attractor_bench.preparation import check_training_cost
    check_training_cost(load_suite(write(tmp_path, doc)))


def bad(**changes):
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    for path, value in changes.items():
        node = doc
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[keys[-1]] = value
    return doc


CASES = [
    (bad(colour="red"), r"colour: unknown key"),
    (bad(**{"attacks": [{"name": "deepfoo", "eps": [0.1]}]}), r"attacks\[0\]\.name: unknown attack 'deepfoo'. Choose one of: fgsm.*'module:callable'"),
    (bad(**{"attacks": [{"name": "fgsm", "eps": [0.1, -0.2]}]}), r"attacks\[0\]\.eps\[1\]: -0.2 is outside \[0, 1\]"),
    (bad(**{"attacks": [{"name": "fgsm", "eps": ["300/255"]}]}), r"attacks\[0\]\.eps\[0\]: 1.17647 is outside"),
    (bad(**{"attacks": [{"name": "fgsm", "eps": ["lots"]}]}), r"attacks\[0\]\.eps\[0\]: 'lots' is not a number"),
    (bad(**{"attacks": [{"name": "fgsm", "eps": []}]}), r"attacks\[0\]\.eps: expected a non-empty list"),
    (bad(**{"attacks": [{"name": "fgsm", "eps": [0.1], "target": "brain"}]}), r"attacks\[0\]\.target: unknown value"),
    (bad(**{"attacks": []}), r"attacks: expected a non-empty list"),
    (bad(**{"data": {"ood": ["svhn"]}}), r"data\.ood\[0\]: unknown value 'svhn'"),
    (bad(**{"models": {"m": {"preset": "resnet"}}}), r"models\.m\.preset: unknown model 'resnet'. Choose one of: baseline"),
    (bad(**{"models": {"m": {"preset": "baseline", "train": {"epochs": 3}}}}), r"models\.m\.train\.epochs: unknown key"),
    (bad(**{"models": {"m": {"preset": "baseline", "train": {"max_epochs": "3"}}}}), r"models\.m\.train\.max_epochs: expected an integer"),
    (bad(**{"models": {}}), r"models: at least one model"),
    (bad(**{"defence": {"name": "magic"}}), r"defence\.name: unknown defence 'magic'"),
    (bad(**{"rejector": {"threshold": 0.8, "target_tpr": 0.95}}), r"rejector: give either"),
    (bad(seed=-1), r"seed: must be >= 0"),
    (bad(**{"models": {"m": {"preset": "attractor", "train": {"init": "later"}}}}), r"models\.m\.train\.init: expected the name of a model defined above"),
    (bad(**{"attacks": [{"name": "pgd", "eps": [0.1], "params": {"max_iters": 5}}]}), r"attacks\[0\]\.params\.max_iters: unknown key"),
    (bad(**{"attacks": [{"name": "pgd", "eps": [0.1], "params": {"eps_step": 0.1}}]}), r"params\.eps_step: unknown key.*eps_step_ratio"),
    (bad(reference="paper", **{"attacks": [{"name": "pgd", "eps": [0.1]}]}), r"reference: 'paper' compares with the paper's FGSM"),
    ({k: v for k, v in GOOD.items() if k != "attacks"}, r"missing required key 'attacks'"),
    (bad(**{"attacks": [{"name": "pgd_l2", "eps": [30]}]}), r"attacks\[0\]\.eps\[0\]: 30 is outside \[0, 28\]"),
    (bad(**{"attacks": [{"name": "pgd", "eps": [2.0]}]}), r"attacks\[0\]\.eps\[0\]: 2 is outside \[0, 1\]"),
    (bad(**{"attacks": [{"name": "pgd", "eps": [0.1], "target": "transfer"}]}), r"attacks\[0\]\.source: target 'transfer' needs"),
    (bad(**{"attacks": [{"name": "pgd", "eps": [0.1], "target": "transfer", "source": "nobody"}]}), r"attacks\[0\]\.source: unknown value 'nobody'"),
    (bad(**{"attacks": [{"name": "pgd", "eps": [0.1], "source": "base"}]}), r"attacks\[0\]\.source: only attacks with target 'transfer'"),
    (bad(**{"attacks": [{"name": "rejection_aware", "eps": [0.1], "target": "bpda"}]}), r"attacks\[0\]\.target: rejection_aware .* use target 'pipeline'"),
    (bad(**{"attacks": [{"name": "square", "eps": [0.1], "target": "bpda"}]}), r"attacks\[0\]\.target: square is a black-box attack"),
    (bad(**{"attacks": [{"name": "square", "eps": [0.1], "n": 0}]}), r"attacks\[0\]\.n: must be >= 1"),
    (bad(**{"attacks": [{"name": "square", "eps": [0.1], "ood": "no"}]}), r"attacks\[0\]\.ood: expected true or false"),
    (bad(**{"attacks": [{"name": "pgd", "eps": [0.1], "label": "worst_case_linf"}]}), r"attacks\[0\]\.label: label 'worst_case_linf' is used twice \(or reserved\)"),
    # outside attacks, defences and models (plugins)
    (bad(**{"attacks": [{"name": "no_such_module_xyz:make", "eps": [0.1]}]}), r"attacks\[0\]\.name: cannot import module 'no_such_module_xyz'"),
    (bad(**{"attacks": [{"name": "json:no_such_function", "eps": [0.1]}]}), r"attacks\[0\]\.name: module 'json' has no attribute"),
    (bad(**{"attacks": [{"name": "json:decoder", "eps": [0.1]}]}), r"attacks\[0\]\.name: 'json:decoder' is not callable"),
    (bad(**{"attacks": [{"name": 3, "eps": [0.1]}]}), r"attacks\[0\]\.name: expected the name of an attack"),
    (bad(**{"models": {"m": {"preset": "baseline", "params": {"width": 3}}}}), r"models\.m\.params: preset 'baseline' is configured by 'train'"),
    (bad(**{"models": {"m": {"preset": "json:loads", "train": {"max_epochs": 3}}}}), r"models\.m\.train: 'json:loads' is an outside model"),
    (bad(**{"models": {"m": {"preset": "baseline", "defence": {"name": "none", "tol": 0.1}}}}), r"models\.m\.defence\.tol: unknown key"),
    (bad(**{"models": {"m": {"preset": "baseline", "defence": {"name": "none"}}},
            "attacks": [{"name": "rejection_aware", "eps": [0.1], "target": "pipeline"}]}), r"attacks\[0\]\.name: rejection_aware attacks a model's rejector, and no model of this suite has one"),
    (bad(**{"models": {"m": {"preset": "mlp", "train": {"max_epochs": 3}}}}), r"models\.m\.train: 'mlp' is configured by 'params'"),
    (bad(**{"models": {"m": {"preset": "mlp", "params": {"width": 3}}}}), r"models\.m\.params\.width: unknown key"),
    (bad(**{"models": {"m": {"preset": "attractor", "train": {"early_stopping": "last"}}}}),
     r"models\.m\.train\.early_stopping: unknown value 'last'. Choose one of: best, paper"),
    (bad(**{"attacks": [{"name": "fgsm", "eps": [0.1], "loss": "dlr"}]}), r"attacks\[0\]\.loss: unknown value 'dlr'. Choose one of: cross_entropy, training"),
    (bad(**{"attacks": [{"name": "apgd_ce", "eps": [0.1], "loss": "training"}]}),
     r"attacks\[0\]\.loss: apgd_ce does not differentiate the classifier's loss"),
    (bad(**{"models": {"m": {"preset": "mlp", "defence": {"name": "apudae", "steps": 3, "depth": 1}}}}), r"models\.m\.defence\.depth: unknown key"),
]


@pytest.mark.parametrize("doc,match", CASES)
def test_errors_name_file_and_key(tmp_path, doc, match):
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError, match=match) as e:
        load_suite(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("text,match", [("models: [unclosed", "not valid YAML"), ("- 1\n- 2\n", "must be a YAML mapping"),
                                        ("", "must be a YAML mapping")])
def test_unreadable_files(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_suite(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="suite file not found"):
        load_suite(tmp_path / "nope.yaml")


def test_unsafe_yaml_is_not_executed(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_suite(write(tmp_path, "models: !!python/object/apply:os.system ['echo pwned']\n"))
