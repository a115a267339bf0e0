"""The ART classifier's two speed levers change no number: gradients to the input only (no weight
gradients) and remembered predictions, each against the plain computation, bit for bit."""

import numpy as np
import pytest
import torch
from art.attacks.evasion import SquareAttack

from attractor_bench import AttractorDefence, make_classifier
from attractor_bench.classifier import networks
from attractor_bench.defences import straight_through
from attractor_bench.models import MODELS


def plain_gradient(f, x, y):
    """The input gradient of the mean cross-entropy with every parameter requiring gradients."""
    xg = torch.from_numpy(x).requires_grad_(True)
    torch.nn.functional.cross_entropy(f(xg), torch.from_numpy(y)).backward()
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


def _rows_keep_their_bits_in_any_batch(model, images) -> None:
    """The memo answers a query from the rows of an earlier, larger batch: the same bits only where
    the CPU's float kernels give a row the same bits in any batch. Skip (saying so) where they do not
    (seen with MKL on an AMD EPYC machine: 1e-5 apart in a 500-wide matmul for batches of 1 and 2)."""
    x = torch.as_tensor(images.reshape(len(images), -1))
    with torch.no_grad():
        full, part = model(x), model(x[3:9])
    full, part = (full[0], part[0]) if isinstance(full, tuple) else (full, part)
    if not torch.equal(full[3:9], part):
        pytest.skip("this CPU's kernels give a row other bits in a smaller batch, so remembered answers cannot be "
                    "bit-identical here; see docs/performance.md")


def test_remembered_predictions_are_the_same_bits_with_fewer_passes(model, images):
    _rows_keep_their_bits_in_any_batch(model, images)
    clf = make_classifier(model, AttractorDefence(model))
    seen = counting(model)
    plain = [clf.predict(images), clf.predict(images[3:9]), clf.predict(images[::-1])]
    asked = seen["rows"]
    seen["rows"] = 0
    with clf.memoized():
        again = [clf.predict(images), clf.predict(images[3:9]), clf.predict(images[::-1])]
    assert all(np.array_equal(a, b) for a, b in zip(plain, again))
    assert asked == 16 + 6 + 16 and seen["rows"] == 16  # each distinct image once
    seen["rows"] = 0
    clf.predict(images)  # outside the block: nothing remembered
    assert seen["rows"] == 16


def test_square_attack_with_remembered_predictions_is_unchanged(model, images):
    """ART's Square asks for most images three times an iteration; remembering answers changes nothing."""
    _rows_keep_their_bits_in_any_batch(model, images)
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
