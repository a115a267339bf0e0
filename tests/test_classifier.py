"""The ART classifier's two speed levers change no number: gradients to the input only (no weight
gradients) and remembered predictions, each against the plain computation, bit for bit."""

import numpy as np
import pytest
import torch
from art.attacks.evasion import SquareAttack

from attractor_bench import AttractorDefence, make_classifier
from attractor_bench.batch_invariance import MIN_ROWS
from attractor_bench.classifier import networks
from attractor_bench.defenses import straight_through
from attractor_bench.models import MODELS, AttractorNet
from attractor_bench.models.cnn import MadryCNN
from attractor_bench.models.mlp import MLP


def plain_gradient(f, x, y):
    """The input gradient of the summed cross-entropy with every parameter requiring gradients."""
    xg = torch.from_numpy(x).requires_grad_(True)
    torch.nn.functional.cross_entropy(f(xg), torch.from_numpy(y), reduction="sum").backward()
    return xg.grad.numpy()


@pytest.mark.parametrize("backward", ["unrolled", "bpda"])
def test_input_gradients_equal_autograd_and_leave_the_parameters_as_they_were(model, images, backward):
    y = np.arange(len(images)) % 10
    defence = AttractorDefence(model, max_iter=2, backward=backward)
    f = lambda x: model(defence.forward(x)[0])  # noqa: E731
    expected = plain_gradient(f, images, y)
    model.zero_grad(set_to_none=True)
    clf = make_classifier(model, defence)
    got = clf.loss_gradient(images, np.eye(10, dtype=np.float32)[y])
    assert np.array_equal(got, expected)
    assert all(p.requires_grad for p in model.parameters())  # still trainable
    assert all(p.grad is None for p in model.parameters())  # no weight gradient was computed
    grads = clf.class_gradient(images, label=y)
    assert grads.shape == (len(images), 1, 1, 28, 28) and np.abs(grads).max() > 0
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_networks_finds_the_modules_a_defence_computes_with(model):
    defence = AttractorDefence(model)
    assert networks(defence) == [model]
    assert networks(straight_through(defence)) == [model]  # through the wrapper


def counting(model):
    """model with a counter of the images its forward pass sees."""
    seen = {"rows": 0}
    model.register_forward_pre_hook(lambda m, args: seen.__setitem__("rows", seen["rows"] + len(args[0])))
    return seen


def _networks():
    torch.manual_seed(0)
    return {"mlp": MLP().eval(), "cnn": MadryCNN().eval(), "attractor": AttractorNet().eval()}


def test_this_cpu_gives_a_row_the_same_bits_in_any_batch_of_at_least_min_rows():
    """The premise of `batch_invariance`: from MIN_ROWS rows on, a row's logits and input gradient
    do not depend on the batch's size, the row's place in it or the rows beside it. Where this
    fails, the CPU's kernels need a larger MIN_ROWS (smaller batches do differ: the next test)."""
    x = torch.from_numpy(np.random.default_rng(1).random((120, 1, 28, 28), dtype=np.float32))
    y = torch.arange(120) % 10
    perm = torch.randperm(120, generator=torch.Generator().manual_seed(0))
    for name, net in _networks().items():
        with torch.no_grad():
            full = net(x)
            assert torch.equal(full[perm], net(x[perm])), name
            for a, b in ((0, MIN_ROWS), (3, 3 + MIN_ROWS), (7, 7 + 37), (40, 120)):
                assert torch.equal(full[a:b], net(x[a:b])), (name, a, b)
        grads = {}
        for a, b in ((0, 120), (5, 5 + MIN_ROWS)):
            xg = x[a:b].clone().requires_grad_(True)
            torch.nn.functional.cross_entropy(net(xg), y[a:b], reduction="sum").backward()
            grads[a] = xg.grad
        assert torch.equal(grads[0][5:5 + MIN_ROWS], grads[5]), name


@pytest.mark.parametrize("which", ["mlp", "cnn", "attractor", "attractor_training_cost"])
def test_an_images_gradient_is_the_same_bits_in_a_batch_of_1_7_or_256(which):
    """Before: ART's mean loss divided each image's gradient by the batch size, and batches of
    fewer than 10 rows took other kernels; now the loss is a sum and every batch at least MIN_ROWS
    rows, so an image's gradient (and prediction) is the same bits in any batch."""
    from attractor_bench.classifier import TrainingCost

    net = _networks()["attractor" if which.startswith("attractor") else which]
    defence = AttractorDefence(net, max_iter=3) if which.startswith("attractor") else None
    cost = TrainingCost((0.988, 0.002, 0.01)) if which == "attractor_training_cost" else None
    clf = make_classifier(net, defence, cost=cost)
    x = np.random.default_rng(2).random((256, 1, 28, 28), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[np.arange(256) % 10]
    g, p = clf.loss_gradient(x, y), clf.predict(x, batch_size=256)
    for n in (1, 7):
        assert np.array_equal(clf.loss_gradient(x[:n], y[:n]), g[:n]), n
        assert np.array_equal(clf.predict(x[:n]), p[:n]), n
    assert np.array_equal(clf.loss_gradient(x[100:107], y[100:107]), g[100:107])
    label = np.arange(7) % 10
    assert np.array_equal(clf.class_gradient(x[:7], label=label), clf.class_gradient(x[:64], label=np.arange(64) % 10)[:7])


def test_remembered_predictions_are_the_same_bits_with_fewer_passes(model, images):
    """Before, a remembered row was that of an earlier, larger batch, and on this CPU a batch of 6
    gives other bits: the memo's answer to images[3:9] differed from recomputing it."""
    clf = make_classifier(model, AttractorDefence(model))
    seen = counting(model)
    plain = [clf.predict(images), clf.predict(images[3:9]), clf.predict(images[::-1])]
    asked = seen["rows"]
    seen["rows"] = 0
    with clf.memoized():
        again = [clf.predict(images), clf.predict(images[3:9]), clf.predict(images[::-1])]
    assert all(np.array_equal(a, b) for a, b in zip(plain, again))
    assert asked == 16 + MIN_ROWS + 16 and seen["rows"] == 16  # each distinct image once (6 images run as MIN_ROWS rows)
    seen["rows"] = 0
    clf.predict(images)  # outside the block: nothing remembered
    assert seen["rows"] == 16


def test_square_attack_with_remembered_predictions_is_unchanged(model, images):
    """ART's Square asks for most images three times an iteration; remembering answers changes nothing."""
    clf = make_classifier(model, AttractorDefence(model))
    y = clf.predict(images).argmax(1)
    runs = []
    for memo in (False, True):
        np.random.seed(3)
        seen = counting(model)
        attack = SquareAttack(clf, eps=0.1, max_iter=30, p_init=0.8, batch_size=8, verbose=False)
        if memo:
            with clf.memoized():
                runs.append((attack.generate(images, y=y), seen["rows"]))
        else:
            runs.append((attack.generate(images, y=y), seen["rows"]))
        model._forward_pre_hooks.clear()
    (plain, rows_plain), (memo, rows_memo) = runs
    assert np.array_equal(plain, memo)
    assert rows_memo < rows_plain / 2


def test_randomized_models_are_not_remembered(images):
    torch.manual_seed(0)
    recipe = MODELS["stochastic"]
    model = recipe.make(**recipe.defaults).eval()
    model.inference_samples, model.eot_samples = 1, 2
    clf = make_classifier(model)
    with clf.memoized():
        a, b = clf.predict(images), clf.predict(images)
    assert not np.array_equal(a, b)  # two draws, not one remembered answer


def test_the_training_cost_loss_is_eq4_without_l_eigen_and_l_eigen_has_no_input_gradient(model, images):
    """`loss: training`: the input gradient ART computes equals autograd of a1 L_rec + a3 L_cls written
    out here (not through attractor_loss), and adding a2 L_eigen (exact Jacobian) changes it by
    nothing but rounding: in a ReLU network the Jacobian is constant on each linear region."""
    from attractor_bench.classifier import TrainingCost
    from attractor_bench.losses import PenaltyMethod, attractor_loss

    y = np.arange(len(images)) % 10
    a = (0.988, 0.002, 0.01)
    clf = make_classifier(model, cost=TrainingCost(a))
    got = clf.loss_gradient(images, np.eye(10, dtype=np.float32)[y])

    def written_out(xg):
        flat = xg.flatten(1)
        rec = ((model.reconstruct(xg).flatten(1) - flat) ** 2).mean(1).sum()  # summed over images, as the classifier's
        return a[0] * rec + a[2] * torch.nn.functional.cross_entropy(model(xg), torch.from_numpy(y), reduction="sum")

    xg = torch.from_numpy(images).requires_grad_(True)
    written_out(xg).backward()
    np.testing.assert_allclose(got, xg.grad.numpy(), rtol=1e-5, atol=1e-9)

    xe = torch.from_numpy(images).flatten(1).requires_grad_(True)
    attractor_loss(model.chain(), model.head, xe, torch.from_numpy(y), a, PenaltyMethod.EXACT)[0].backward()
    with_eigen = xe.grad.numpy().reshape(images.shape) * len(images)  # training's loss is the batch mean
    np.testing.assert_allclose(got, with_eigen, rtol=1e-4, atol=1e-8)
    # and the cost is not cross-entropy: the reconstruction term moves the gradient
    ce = make_classifier(model).loss_gradient(images, np.eye(10, dtype=np.float32)[y])
    assert np.abs(np.sign(ce) - np.sign(got)).sum() > 0.1 * got.size


def test_a_defended_model_gives_attacks_its_training_cost_only_when_it_has_one(model, images):
    from art.attacks.evasion import FastGradientMethod

    from attractor_bench.cells import Defended
    from attractor_bench.classifier import TrainingCost
    from attractor_bench.config import Target

    defence = AttractorDefence(model, max_iter=1)
    plain = Defended(model, defence, None)
    assert plain.classifier(Target.PIPELINE, "training") is plain.classifiers[Target.PIPELINE]
    own = Defended(model, defence, None, training_cost=TrainingCost((0.988, 0.002, 0.01)))
    clf = own.classifier(Target.PIPELINE, "training")
    assert clf is not own.classifiers[Target.PIPELINE] and clf is own.classifier(Target.PIPELINE, "training")
    y = np.eye(10, dtype=np.float32)[np.arange(len(images)) % 10]
    x_own = FastGradientMethod(clf, eps=0.1).generate(images, y)
    x_ce = FastGradientMethod(own.classifiers[Target.PIPELINE], eps=0.1).generate(images, y)
    assert np.abs(x_own - images).max() <= 0.1 + 1e-6 and not np.array_equal(x_own, x_ce)
    np.testing.assert_array_equal(clf.predict(images), own.classifiers[Target.PIPELINE].predict(images))
    assert "_own_cost" not in own.__getstate__()
