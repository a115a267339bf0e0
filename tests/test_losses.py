import pytest
import torch

from attractor_bench.losses import (
    PenaltyMethod, attractor_loss, jacobian_sq_norm_estimate, jacobian_sq_norm_estimate_jvp, jacobian_sq_norm_exact,
    jacobian_sq_norm_naive,
)
from attractor_bench.models import AttractorNet


def chains(model):
    return {"full": model.chain(), "stage1": model.stage_chain(0), "stage2": model.stage_chain(1), "stage3": model.stage_chain(2)}


@pytest.mark.parametrize("act", ["relu", "sigmoid", "linear"])
@pytest.mark.parametrize("which", ["full", "stage1", "stage2", "stage3"])
def test_exact_penalty_matches_jacrev(act, which):
    torch.manual_seed(1)
    chain = chains(AttractorNet(act))[which]
    x = torch.rand(5, chain.layers[0].in_features)
    exact = jacobian_sq_norm_exact(chain, chain(x)[2])
    naive = jacobian_sq_norm_naive(chain, x)
    torch.testing.assert_close(exact, naive, rtol=1e-4, atol=0)


@pytest.mark.parametrize("which", ["full", "stage2"])
def test_exact_penalty_gradient_matches_jacrev(which):
    torch.manual_seed(2)
    model = AttractorNet().double()
    chain = chains(model)[which]
    x = torch.rand(3, chain.layers[0].in_features, dtype=torch.float64)
    g_exact = torch.autograd.grad(jacobian_sq_norm_exact(chain, chain(x)[2]).sum(), chain.layers[0].weight)[0]
    g_naive = torch.autograd.grad(jacobian_sq_norm_naive(chain, x).sum(), chain.layers[0].weight)[0]
    torch.testing.assert_close(g_exact, g_naive, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("act", ["relu", "sigmoid", "linear"])
@pytest.mark.parametrize("which", ["full", "stage1", "stage2", "stage3"])
def test_tangents_match_jvp(act, which):
    torch.manual_seed(5)
    chain = chains(AttractorNet(act))[which]
    x = torch.rand(6, chain.layers[0].in_features)
    v = torch.randn(3, *x.shape)
    out, _, _, jv = chain(x, tangents=v)
    for p in range(3):
        ref_out, ref_jv = torch.func.jvp(chain.output, (x,), (v[p],))
        torch.testing.assert_close(jv[p], ref_jv, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, ref_out)


@pytest.mark.parametrize("which", ["full", "stage1", "stage2", "stage3"])
def test_estimator_is_unbiased(which):
    torch.manual_seed(3)
    chain = chains(AttractorNet())[which]
    x = torch.rand(4, chain.layers[0].in_features)
    exact = jacobian_sq_norm_exact(chain, chain(x)[2])
    estimate = jacobian_sq_norm_estimate(chain, x, n_projections=400)
    torch.testing.assert_close(estimate, exact, rtol=0.1, atol=0)
    one = jacobian_sq_norm_estimate(chain, x, n_projections=1)
    assert not torch.allclose(one, exact, rtol=1e-3)  # one draw is noisy: the average above is doing the work


def test_loss_weights():
    torch.manual_seed(4)
    model = AttractorNet()
    x, y = torch.rand(8, 784), torch.randint(0, 10, (8,))
    base, parts = attractor_loss(model.chain(), model.head, x, y, (0.99, 0.0, 0.01))
    assert parts["eigen"] == 0.0
    assert base.item() == pytest.approx(0.99 * parts["rec"] + 0.01 * parts["cls"], rel=1e-5)
    full, parts = attractor_loss(model.chain(), model.head, x, y, (0.988, 0.002, 0.01), PenaltyMethod.EXACT)
    half_sq = 0.5 * jacobian_sq_norm_naive(model.chain(), x).mean().item()
    assert parts["eigen"] == pytest.approx(half_sq, rel=1e-4)
    assert full.item() == pytest.approx(0.988 * parts["rec"] + 0.002 * half_sq + 0.01 * parts["cls"], rel=1e-4)


def test_jvp_reference_estimator_agrees():
    torch.manual_seed(6)
    chain = AttractorNet().chain()
    x = torch.rand(4, 784)
    exact = jacobian_sq_norm_exact(chain, chain(x)[2])
    torch.testing.assert_close(jacobian_sq_norm_estimate_jvp(chain, x, n_projections=400), exact, rtol=0.1, atol=0)


def test_loss_estimate_uses_its_own_draws():
    """The estimated L_eigen in the loss is 1/2 mean ||J v||^2 for the v it drew (same RNG stream)."""
    torch.manual_seed(7)
    model = AttractorNet()
    x, y = torch.rand(8, 784), torch.randint(0, 10, (8,))
    torch.manual_seed(8)
    _, parts = attractor_loss(model.chain(), model.head, x, y, (0.988, 0.002, 0.01), PenaltyMethod.ESTIMATE, 3)
    torch.manual_seed(8)
    v = torch.randn(3, *x.shape)
    jv = torch.stack([torch.func.jvp(model.chain().output, (x,), (v[p],))[1] for p in range(3)])
    assert parts["eigen"] == pytest.approx(0.5 * jv.pow(2).sum(2).mean().item(), rel=1e-5)


def test_exact_penalty_with_sparse_activity():
    """Samples with different numbers of active units at the split layer (padding path), incl. none."""
    torch.manual_seed(9)
    model = AttractorNet()
    with torch.no_grad():
        model.encoder[1].bias[:] = -0.3  # most units of the first 300-wide layer off
    chain = model.chain()
    x = torch.rand(6, 784) * torch.tensor([1.0, 0.5, 0.1, 0.0, 2.0, 1.0])[:, None]
    counts = (chain(x)[2][1] != 0).sum(1)
    assert len(set(counts.tolist())) > 1
    torch.testing.assert_close(jacobian_sq_norm_exact(chain, chain(x)[2]), jacobian_sq_norm_naive(chain, x), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("act", ["relu", "sigmoid", "linear"])
def test_a_pass_without_derivatives_gives_the_same_bits(act):
    """An attack or the defence needs no activation derivatives: `derivatives=False` skips them,
    and the output, the features and the input gradient are the same bytes (signed zeros included)."""
    torch.manual_seed(3)
    chain = AttractorNet(act).chain()
    x = torch.rand(64, 784) - 0.3  # negative inputs too: ReLU of a negative pre-activation is -0.0 both ways
    runs = []
    for derivatives in (True, False):
        xg = x.clone().requires_grad_(True)
        out, feats, derivs = chain(xg, derivatives=derivatives)
        (out.pow(2).sum() + feats.sum()).backward()
        runs.append([t.detach().numpy().tobytes() for t in (out, feats, xg.grad)])
        assert (derivs is None) == (not derivatives)
    assert runs[0] == runs[1]
    assert len(chain(x, tangents=torch.randn(1, *x.shape), derivatives=False)) == 4  # tangents need them: computed
