import numpy as np
import pytest
import torch

from attractor_bench.classifier import make_classifier
from attractor_bench.defenses import AttractorDefence, PearsonRejector, pearson


class Contraction(torch.nn.Module):
    """G(x) = 0.5 x + 0.25: a contraction with fixed point 0.5 everywhere."""

    def reconstruct(self, x):
        return 0.5 * x + 0.25


def test_pearson_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.random((6, 784)), rng.random((6, 784))
    b[1] = 2 * a[1] + 0.1  # perfectly correlated
    ours = pearson(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    ref = [np.corrcoef(a[i], b[i])[0, 1] for i in range(6)]
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    assert ours[1] == pytest.approx(1.0)


def test_pearson_of_constant_image_is_zero():
    assert pearson(torch.zeros(1, 784), torch.rand(1, 784)).item() == 0.0


def test_converges_on_contraction():
    d = AttractorDefence(Contraction(), tol=1e-4, max_iter=100)
    x = torch.rand(5, 1, 28, 28)
    fixed, n = d.iterate(x)
    assert torch.allclose(fixed, torch.full_like(x, 0.5), atol=1e-4)
    # |x_k - 0.5| = |x_0 - 0.5| / 2^k: the step at k is |x_0 - 0.5| / 2^k, which falls below 1e-4 by k = 13
    assert (n <= 14).all() and (n >= 2).all()
    assert fixed.shape == x.shape


def test_stops_at_max_iter_and_converged_samples_are_frozen():
    d = AttractorDefence(Contraction(), tol=1e-4, max_iter=3)
    x = torch.rand(4, 784)
    _, n = d.iterate(x)
    assert (n == 3).all()
    # A converged sample is frozen: its result does not depend on the rest of its batch.
    # Sample 0 starts 0.03 from the fixed point: steps 0.015, 0.0075 -> it stops after 2 iterations
    # (the step of the 2nd is below tol), at 0.5 + 0.03 / 4; sample 1 starts far away and needs more.
    d = AttractorDefence(Contraction(), tol=1e-2, max_iter=50)
    x = torch.stack([torch.full((784,), 0.53, dtype=torch.float64), torch.full((784,), 0.99, dtype=torch.float64)])
    batch, n_batch = d.iterate(x)
    alone, n_alone = d.iterate(x[:1])
    assert n_batch.tolist() == [2, 6] and n_alone.tolist() == [2]
    torch.testing.assert_close(batch[0], torch.full((784,), 0.5 + 0.03 / 4, dtype=torch.float64))
    assert torch.equal(batch[0], alone[0])


@pytest.mark.parametrize("backward,expected", [("unrolled", None), ("bpda", 1.0)])
def test_gradients_flow_in_both_modes(backward, expected):
    d = AttractorDefence(Contraction(), tol=1e-3, max_iter=5, backward=backward)
    x = torch.full((2, 1, 28, 28), 0.9, requires_grad=True)
    out, _ = d.forward(x)
    out.sum().backward()
    # unrolled: d/dx of 5 applications of 0.5 x + 0.25 is 0.5^5; bpda: identity
    want = 0.5**5 if expected is None else expected
    torch.testing.assert_close(x.grad, torch.full_like(x, want))
    torch.testing.assert_close(out, d.iterate(x.detach())[0])  # both modes return the fixed point


def test_set_params_switches_backward():
    d = AttractorDefence(Contraction(), tol=1e-3, max_iter=5)
    d.set_params(backward="bpda")  # ART's generic setter stores strings
    x = torch.full((1, 784), 0.9, requires_grad=True)
    d.forward(x)[0].sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))


def test_gradient_through_real_model(model):
    d = AttractorDefence(model, max_iter=4)
    x = torch.rand(3, 1, 28, 28, requires_grad=True)
    model(d.forward(x)[0]).logsumexp(1).sum().backward()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("bad,match", [
    (torch.rand(2, 3, 32, 32), "expected a batch of 28x28"),
    (torch.rand(2, 1, 28), "expected a batch of 28x28"),
    (torch.full((2, 784), float("nan")), "NaN or Inf"),
    (torch.full((2, 1, 28, 28), float("inf")), "NaN or Inf"),
    (torch.full((2, 784), 1.5), r"must lie in \[0, 1\]"),
    (torch.full((2, 784), -0.5), r"must lie in \[0, 1\]"),
])
def test_bad_inputs_raise(model, bad, match):
    """The defence, the rejector and the ART classifier (plain and defended) name the problem."""
    with pytest.raises(ValueError, match=match):
        AttractorDefence(model).forward(bad)
    with pytest.raises(ValueError, match=match):
        PearsonRejector(AttractorDefence(model)).score(bad.numpy())
    y = np.zeros(len(bad), dtype=int)
    for clf in (make_classifier(model), make_classifier(model, AttractorDefence(model))):
        for call in (lambda: clf.predict(bad.numpy()), lambda: clf.loss_gradient(bad.numpy(), y),
                     lambda: clf.class_gradient(bad.numpy(), label=0), lambda: clf.fit(bad.numpy(), y, nb_epochs=1)):
            with pytest.raises(ValueError, match=match):
                call()


def test_attractor_defence_needs_an_autoencoder():
    with pytest.raises(ValueError, match="needs a model with reconstruct"):
        AttractorDefence(torch.nn.Linear(784, 10))


def test_bad_parameters_raise(model):
    with pytest.raises(ValueError, match="max_iter"):
        AttractorDefence(model, max_iter=-1)
    with pytest.raises(ValueError, match="Backward|backward|'sideways'"):
        AttractorDefence(model, backward="sideways")
    with pytest.raises(ValueError, match="threshold"):
        PearsonRejector(AttractorDefence(model), similarity=2.0)


def test_rejector_detect_and_calibrate(images):
    d = AttractorDefence(Contraction(), tol=1e-4, max_iter=1)  # one step: G(x) is an affine image of x
    rejector = PearsonRejector(d, similarity=0.8)
    assert rejector.threshold == -0.8 and rejector.similarity_threshold == 0.8  # outlier score: minus the similarity
    np.testing.assert_allclose(rejector.score(images), -1.0, atol=1e-5)  # affine map: correlation 1
    assert rejector.accept(images).all()
    out = rejector.outputs(images)
    np.testing.assert_array_equal(out["score"], rejector.score(images))
    assert set(out) == {"score", "score_single", "n_iter"} and (out["n_iter"] == 1).all()
    # calibration: accept the requested share of ID samples
    class Noisy(torch.nn.Module):
        def reconstruct(self, x):
            g = torch.Generator().manual_seed(0)
            return (x + torch.rand(x.shape, generator=g) * torch.linspace(0, 3, x.shape[0])[:, None]).clamp(0, 1)

    rejector = PearsonRejector(AttractorDefence(Noisy(), max_iter=1)).fit(images, target_tpr=0.75)
    scores = rejector.score(images)
    assert (~rejector.accept(images)).sum() == 4  # 16 images, 75% accepted
    assert rejector.threshold == pytest.approx(np.sort(scores)[11])  # the 12th lowest outlier score


@pytest.mark.parametrize("which", ["contraction", "model"])
def test_no_grad_iteration_matches_the_differentiable_one(which, model):
    """Evaluation computes G only on samples still moving; the result is that of the masked,
    differentiable loop, sample for sample and bit for bit (before, the last few samples still
    moving ran as a batch of fewer than 10 rows, whose kernels give other bits on this CPU)."""
    g = Contraction() if which == "contraction" else model
    d = AttractorDefence(g, tol=1e-3, max_iter=20)
    x = 0.5 + (torch.rand(16, 1, 28, 28) - 0.5) * torch.linspace(0.01, 1, 16)[:, None, None, None]
    with torch.no_grad():
        fast, n_fast = d.iterate(x)
    slow, n_slow = d.iterate(x.clone().requires_grad_(True))
    assert torch.equal(n_fast, n_slow)
    if which == "contraction":
        assert n_fast.min() < n_fast.max()  # samples stopped at different iterations
    assert torch.equal(fast, slow.detach())


def test_the_last_few_samples_still_moving_get_the_bits_they_get_in_the_differentiable_loop(model):
    """tol set so that 3 of 16 samples move on after the first step: evaluation computes their
    second step as a batch of 3 (padded to MIN_ROWS rows: before, other bits on this CPU)."""
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first = model.reconstruct(x.flatten(1)).clamp(0, 1)
        steps = (first - x.flatten(1)).abs().amax(1).sort().values
    d = AttractorDefence(model, tol=float(steps[-3]), max_iter=2)
    with torch.no_grad():
        fast, n_fast = d.iterate(x)
    slow, _ = d.iterate(x.clone().requires_grad_(True))
    assert n_fast.tolist().count(2) == 3
    assert torch.equal(fast, slow.detach())
