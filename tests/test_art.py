"""ART's own attacks against the factory's classifier, with and without the defence, checked
against a plain-torch FGSM oracle."""

import numpy as np
import pytest
import torch
from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
from art.estimators.classification import PyTorchClassifier

from attractor_bench import AttractorDefence, make_classifier


def torch_fgsm(f, x, y, eps):
    x = torch.from_numpy(x).requires_grad_(True)
    torch.nn.functional.cross_entropy(f(x), torch.from_numpy(y), reduction="sum").backward()
    return (x + eps * x.grad.sign()).clamp(0, 1).detach().numpy()


@pytest.mark.parametrize("defended", [False, True])
def test_fgsm_matches_torch_oracle(model, images, defended):
    y = np.arange(len(images)) % 10
    defence = AttractorDefence(model, max_iter=3) if defended else None
    clf = make_classifier(model, defence=defence)
    assert isinstance(clf, PyTorchClassifier) and tuple(clf.clip_values) == (0.0, 1.0) and clf.nb_classes == 10
    x_adv = FastGradientMethod(clf, eps=0.1).generate(images, y=y)
    f = (lambda x: model(defence.iterate(x)[0])) if defended else model
    np.testing.assert_allclose(x_adv, torch_fgsm(f, images, y, 0.1), atol=1e-6)


@pytest.mark.parametrize("backward", [None, "unrolled", "bpda"])
def test_pgd_with_and_without_the_defence(model, images, backward):
    defence = AttractorDefence(model, max_iter=3, backward=backward) if backward else None
    clf = make_classifier(model, defence=defence)
    x_adv = ProjectedGradientDescent(clf, eps=0.1, eps_step=0.02, max_iter=5, verbose=False).generate(images)
    assert x_adv.shape == images.shape
    assert np.abs(x_adv - images).max() <= 0.1 + 1e-6
    assert np.abs(x_adv - images).max() > 0.05  # it moved
    # predictions go through the defence: the same as classifying the fixed point
    fixed = defence.iterate(torch.from_numpy(x_adv))[0] if defence else torch.from_numpy(x_adv)
    np.testing.assert_allclose(clf.predict(x_adv), model(fixed).detach().numpy(), atol=1e-5)


def test_art_sees_the_chosen_backward_pass(model, images):
    """BPDA: ART's loss gradient is the gradient at the fixed point (straight-through);
    unrolled: the gradient through the iterations, which differs."""
    y = np.arange(len(images)) % 10
    fixed = AttractorDefence(model, max_iter=3).iterate(torch.from_numpy(images))[0].detach().requires_grad_(True)
    torch.nn.functional.cross_entropy(model(fixed), torch.from_numpy(y), reduction="sum").backward()  # as the classifier's loss
    onehot = np.eye(10, dtype=np.float32)[y]
    bpda = make_classifier(model, AttractorDefence(model, max_iter=3, backward="bpda")).loss_gradient(images, onehot)
    unrolled = make_classifier(model, AttractorDefence(model, max_iter=3)).loss_gradient(images, onehot)
    np.testing.assert_allclose(bpda, fixed.grad.numpy(), rtol=1e-4, atol=1e-7)
    assert not np.allclose(unrolled, bpda, rtol=1e-2)
