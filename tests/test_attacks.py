"""The attack registry on a small trained model: every attack respects its budget and finds
adversarial examples; the project's PGD agrees with an independent plain-torch PGD; the
rejection-aware attack does what it says."""

import dataclasses

import numpy as np
import pytest
import torch
from art.attacks.evasion import ProjectedGradientDescent

from attractor_bench import ATTACKS, AttractorDefence, PearsonRejector, make_classifier
from attractor_bench.attacks import ClampedPGD, perturbation_norms, within_budget
from attractor_bench.cache import get_or_train
from attractor_bench.data import load, mnist_train_val
from attractor_bench.defenses import pearson
from attractor_bench.presets import PRESETS

# Small budgets so that every attack runs in seconds on 8 images.
FAST = {
    "bim": {"max_iter": 10}, "pgd": {"max_iter": 10}, "pgd_l2": {"max_iter": 10},
    "apgd_ce": {"max_iter": 10}, "apgd_dlr": {"max_iter": 10},
    "autoattack_standard": {},  # the authors' budgets: at eps 0.3 APGD-CE alone breaks all 8 images
    "autoattack_art": {"apgd_max_iter": 5, "deepfool_max_iter": 5, "square_max_iter": 20},
    "cw_l2": {"max_iter": 10, "binary_search_steps": 2}, "cw_linf": {"max_iter": 5, "largest_const": 1.0},
    "deepfool": {"max_iter": 10}, "square": {"max_iter": 50},
    "hopskipjump": {"max_iter": 2, "max_eval": 50, "init_eval": 10}, "boundary": {"max_iter": 20},
    "rejection_aware": {"max_iter": 10},
}
EPS = {"linf": 0.3, "l2": 4.0}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    """A baseline network trained for a few seconds (about 85% test accuracy) and 8 test images it gets right."""
    train, val = mnist_train_val(data_root, download=False)
    cfg = dataclasses.replace(PRESETS["baseline"], n_train=3000, n_val=500, max_epochs=3, pretrain=False)
    model, _, _ = get_or_train(cfg, train, val, tmp_path_factory.mktemp("cache"))
    test = load("mnist", "test", data_root, download=False)
    x, y = test.x[:64], test.y[:64]
    right = model(torch.from_numpy(x)).argmax(1).numpy() == y
    return model.eval(), x[right][:8], y[right][:8]


def test_fast_budgets_cover_the_registry():
    assert set(FAST) | {"fgsm"} == set(ATTACKS)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_registered_attack_respects_its_budget_and_finds_examples(trained, name):
    model, x, y = trained
    entry = ATTACKS[name]
    defence = AttractorDefence(model, max_iter=1)
    clf = make_classifier(model, defence=defence)
    eps = EPS[entry.norm]
    np.random.seed(0)
    torch.manual_seed(0)
    x_adv = entry.build(clf, eps, rejector=PearsonRejector(defence, similarity=-1.0), **FAST.get(name, {})).generate(x, y=y)
    assert x_adv.shape == x.shape and x_adv.min() >= 0 and x_adv.max() <= 1
    if not entry.bounded:
        x_adv = within_budget(x_adv, x, eps, entry.norm)
    assert perturbation_norms(x_adv, x, entry.norm).max() <= eps * (1 + 1e-5) + 1e-6
    fooled = clf.predict(x_adv).argmax(1) != y
    assert fooled.any(), f"{name} fooled none of 8 images at {entry.norm} eps {eps}"


def test_within_budget_keeps_only_perturbations_inside_eps():
    x = np.zeros((3, 1, 28, 28), np.float32)
    x_adv = x.copy()
    x_adv[0, 0, 0, 0], x_adv[1, 0, 0, 0], x_adv[2, 0, :2, 0] = 0.1, 0.3, 0.2
    kept = within_budget(x_adv, x, 0.2, "linf")
    np.testing.assert_array_equal(kept[[0, 2]], x_adv[[0, 2]])
    np.testing.assert_array_equal(kept[1], x[1])
    kept = within_budget(x_adv, x, 0.25, "l2")  # sample 2 has L2 size 0.283
    np.testing.assert_array_equal(kept[2], x[2])
    np.testing.assert_allclose(perturbation_norms(x_adv, x, "l2"), [0.1, 0.3, np.sqrt(0.08)], rtol=1e-6)


def plain_pgd(f, x, y, eps, step, n_iter):
    """An independent L-inf PGD (no random start) in plain torch."""
    x0 = torch.from_numpy(x)
    xa = x0.clone()
    for _ in range(n_iter):
        xa.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(f(xa), torch.from_numpy(y))
        grad, = torch.autograd.grad(loss, xa)
        xa = torch.min(torch.max(xa.detach() + step * grad.sign(), x0 - eps), x0 + eps).clamp(0, 1)
    return xa.detach().numpy()


@pytest.mark.parametrize("defended", [False, True])
def test_pgd_agrees_with_a_plain_torch_pgd_within_one_point(trained, data_root, defended):
    model, _, _ = trained
    test = load("mnist", "test", data_root, download=False)
    x, y = test.x[1000:1400], test.y[1000:1400]
    defence = AttractorDefence(model, max_iter=1) if defended else None
    clf = make_classifier(model, defence=defence)
    eps = 0.1
    ours = ATTACKS["pgd"].build(clf, eps, max_iter=20, num_random_init=0, eps_step_ratio=0.1).generate(x, y=y)
    f = (lambda z: model(defence.iterate(z)[0])) if defended else model
    theirs = plain_pgd(f, x, y, eps, 0.1 * eps, 20)
    acc = lambda xa: float((clf.predict(xa).argmax(1) == y).mean())
    clean = acc(x)
    assert acc(ours) < clean - 0.2  # the attack does something
    assert abs(acc(ours) - acc(theirs)) <= 0.01, (acc(ours), acc(theirs))


def test_rejection_aware_attack_evades_the_rejector_or_gets_ood_accepted(trained, data_root):
    model, x, y = trained
    defence = AttractorDefence(model, max_iter=1)
    sim = lambda z: pearson(defence.iterate(torch.from_numpy(z))[0], torch.from_numpy(z)).numpy()
    threshold = float(np.quantile(sim(x), 0.25))  # most clean images accepted
    rejector = PearsonRejector(defence, similarity=threshold)
    clf = make_classifier(model, defence=defence)
    attack = ATTACKS["rejection_aware"].build(clf, 0.2, rejector=rejector, max_iter=30)
    x_adv = attack.generate(x, y=y)
    assert np.abs(x_adv - x).max() <= 0.2 + 1e-6
    success = (clf.predict(x_adv).argmax(1) != y) & (sim(x_adv) >= threshold)
    plain = ATTACKS["pgd"].build(clf, 0.2, max_iter=30).generate(x, y=y)
    plain_success = (clf.predict(plain).argmax(1) != y) & (sim(plain) >= threshold)
    assert success.sum() >= max(plain_success.sum(), 1)  # at least as good as PGD, which ignores the rejector
    # OOD mode: no labels, push the similarity of Fashion-MNIST images above the threshold
    ood = load("fashion_mnist", "test", data_root, download=False).x[:16]
    before = (sim(ood) >= threshold).mean()
    after = (sim(attack.generate(ood)) >= threshold).mean()
    assert after > before


def test_rejection_aware_attack_counts_its_passes_on_the_classifier(trained):
    """Its cost is counted where a cell reads it (`CheckedClassifier.passes`): one forward pass per
    image and iterate, one backward pass per image and gradient (it showed 0 / 0 before)."""
    model, x, y = trained
    defence = AttractorDefence(model, max_iter=1)
    clf = make_classifier(model, defence=defence)
    never = PearsonRejector(defence, similarity=1.0)  # no reconstruction is perfect: nothing accepted, no early stop
    for labels in (y, None):  # in-distribution and OOD mode
        before = dict(clf.passes)
        ATTACKS["rejection_aware"].build(clf, 0.1, rejector=never, max_iter=4).generate(x, y=labels)
        spent = {k: clf.passes[k] - before[k] for k in before}
        assert spent == {"forward": len(x) * 5, "backward": len(x) * 4}  # 4 steps, then the last iterate judged


@pytest.mark.parametrize("eps", [0.1, 0.3, 20 / 255])
def test_registry_pgd_gives_arts_bits(model, images, eps):
    """The registry's PGD (ART's PyTorch PGD with the L-inf projection as one clamp) equals ART's
    own ProjectedGradientDescent bit for bit, through the defended pipeline."""
    clf = make_classifier(model, AttractorDefence(model))
    y = np.arange(len(images)) % 10
    runs, forward = [], []
    for build in (lambda: ATTACKS["pgd"].build(clf, eps, max_iter=5, batch_size=8),
                  lambda: ProjectedGradientDescent(clf, eps=eps, eps_step=eps / 4, max_iter=5, num_random_init=1,
                                                   batch_size=8, verbose=False)):
        np.random.seed(0)
        before = clf.passes["forward"]
        runs.append(build().generate(images, y=y))
        forward.append(clf.passes["forward"] - before)
    assert isinstance(ATTACKS["pgd"].build(clf, eps), ClampedPGD)
    assert np.array_equal(runs[0], runs[1]) and np.abs(runs[0] - images).max() > eps / 2
    # ART's closing log line costs two passes over every image (the clean and the adversarial
    # predictions of its success rate); the registry's PGD computes it only when it is logged
    assert forward == [5 * len(images), 7 * len(images)]


def test_registry_pgd_logs_arts_success_rate_when_info_is_logged(model, images, caplog):
    clf = make_classifier(model, AttractorDefence(model))
    y = np.arange(len(images)) % 10
    lines = []
    for build in (lambda: ATTACKS["pgd"].build(clf, 0.3, max_iter=2, batch_size=8),
                  lambda: ProjectedGradientDescent(clf, eps=0.3, eps_step=0.075, max_iter=2, batch_size=8, verbose=False)):
        np.random.seed(0)
        caplog.clear()
        with caplog.at_level("INFO", logger="art.attacks.evasion.projected_gradient_descent"):
            build().generate(images, y=y)
        lines.append([r.getMessage() for r in caplog.records if r.getMessage().startswith("Success rate")])
    assert lines[0] == lines[1] and len(lines[0]) == 1 and lines[0][0].endswith("%")


def test_apgd_keeps_the_classifier_it_is_given(model, images):
    """ART's APGD would attack a plain PyTorchClassifier of its own; the registry's attacks the
    classifier it is given (with APGD's loss): the same bits for a deterministic model, and a
    randomized model's EoT gradients (eot_samples forward passes per gradient)."""
    from art.attacks.evasion import AutoProjectedGradientDescent

    from attractor_bench.classifier import EoTClassifier

    clf = make_classifier(model, AttractorDefence(model))
    y = np.arange(len(images)) % 10
    runs = []
    for build in (lambda: ATTACKS["apgd_ce"].build(clf, 0.1, max_iter=5, batch_size=8),
                  lambda: AutoProjectedGradientDescent(clf, norm=np.inf, eps=0.1, eps_step=0.2, max_iter=5, batch_size=8,
                                                       nb_random_init=1, loss_type="cross_entropy", verbose=False)):
        np.random.seed(0)
        attack = build()
        runs.append(attack.generate(images, y=y))
    assert np.array_equal(runs[0], runs[1])
    for name in ("apgd_ce", "apgd_dlr"):
        assert type(ATTACKS[name].build(clf, 0.1).estimator) is type(clf)
    members = ATTACKS["autoattack_art"].build(clf, 0.1).attacks
    assert all(type(m.estimator) is type(clf) for m in members)

    eot = EoTClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10,
                        clip_values=(0.0, 1.0), preprocessing=None, eot_samples=3)
    attack = ATTACKS["apgd_ce"].build(eot, 0.1, max_iter=2, batch_size=16)
    assert type(attack.estimator) is EoTClassifier and attack.estimator.eot_samples == 3
    passes = []
    model.register_forward_pre_hook(lambda m, args: passes.append(len(args[0])))
    attack.estimator.loss_gradient(images, np.eye(10, dtype=np.float32)[y])
    assert len(passes) == 3  # three draws averaged


@pytest.mark.parametrize("defended,budgets", [(False, "small"), (True, "small"),
                                               pytest.param(True, "authors'", marks=pytest.mark.slow)])
def test_standard_autoattack_contains_apgd_ce_and_its_breaks_are_real(trained, defended, budgets):
    """Standard AutoAttack (the authors' code) starts with APGD-CE and adds APGD-T, FAB-T and Square:
    its robust accuracy is at most that of the registry's APGD-CE on the same images, and every
    image it reports broken is misclassified by the classifier at a perturbation within eps. The
    default run shortens APGD-T, FAB-T and Square (their full budgets take minutes on the images
    APGD-CE leaves); the slow run keeps the authors' budgets."""
    model, x, y = trained
    clf = make_classifier(model, defence=AttractorDefence(model, max_iter=1) if defended else None)
    eps = 0.05
    np.random.seed(0)
    attack = ATTACKS["autoattack_standard"].build(clf, eps)
    assert attack.version == "standard" and attack.attack.attacks_to_run == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert (attack.attack.apgd.n_iter, attack.attack.apgd_targeted.n_target_classes, attack.attack.fab.n_target_classes,
            attack.attack.square.n_queries) == (100, 9, 9, 5000)
    if budgets == "small":
        attack.attack.apgd_targeted.n_iter, attack.attack.fab.n_iter, attack.attack.square.n_queries = 10, 10, 100
    x_aa = attack.generate(x, y)
    np.random.seed(0)
    x_ce = ATTACKS["apgd_ce"].build(clf, eps).generate(x, y=y)
    robust_aa, robust_ce = clf.predict(x_aa).argmax(1) == y, clf.predict(x_ce).argmax(1) == y
    assert robust_aa.mean() <= robust_ce.mean()
    assert robust_ce.any() and (~robust_aa).any()  # not vacuous: APGD-CE leaves images for the others, some break
    assert perturbation_norms(x_aa, x, "linf").max() <= eps * (1 + 1e-5) + 1e-6
    np.testing.assert_array_equal(x_aa[robust_aa], x[robust_aa])  # AutoAttack returns the clean image where it failed
    changed = (x_aa != x).reshape(len(x), -1).any(1)
    assert not robust_aa[changed].any()  # every image it changed is misclassified: its breaks are real


def test_standard_autoattack_uses_the_rand_version_on_a_randomized_model(trained):
    model, x, y = trained
    clf = make_classifier(model)
    clf_eot = type("EoT", (), {"eot_samples": 8, "preprocessing_operations": [], "model": model, "device": clf.device})()
    assert ATTACKS["autoattack_standard"].build(clf_eot, 0.1).version == "rand"
    with pytest.raises(ValueError, match="version"):
        ATTACKS["autoattack_standard"].build(clf, 0.1, version="plus")


def test_the_old_autoattack_name_says_what_it_is_now():
    from attractor_bench.plugins import PluginError, resolve
    with pytest.raises(PluginError, match="autoattack_art.*autoattack_standard"):
        resolve("attack", "autoattack")
