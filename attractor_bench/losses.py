"""The attractor training loss (section 2.5.2, Eq. 4-5):

    L = a1 * L_rec + a2 * L_eigen + a3 * L_cls,    L_eigen = 1/2 * sum_ij (dG(x)_i / dx_j)^2

L_eigen is half the squared Frobenius norm of the autoencoder's Jacobian at the training sample;
keeping it small makes the samples stable fixed points (attractors) of x <- G(x).

Three ways to compute ||J||_F^2 per sample:

- `jacobian_sq_norm_naive`: the oracle, `vmap(jacrev(G))`, a full d_out x d_in Jacobian.
- `jacobian_sq_norm_exact`: exact and much cheaper. For a Linear/elementwise stack
  J = D_L W_L ... D_1 W_1 factors at a hidden layer k as J = B A, and
  ||B A||_F^2 = <B^T B, A A^T>, where only the units of layer k with a nonzero derivative
  count: for ReLU the rank of J is at most the number of active units there, so each sample
  keeps only those (k = the layer where that number is smallest).
- `jacobian_sq_norm_estimate`: unbiased, E_v ||J v||^2 = ||J||_F^2 for v ~ N(0, I). The
  tangents J v are propagated beside the forward pass (forward-mode by hand: one bias-free
  matmul per layer and projection, reusing the pass's activation derivatives), so training
  pays for one shared forward pass, not one per projection as `torch.func.jvp` would
  (`jacobian_sq_norm_estimate_jvp`, kept as a reference).
"""

from __future__ import annotations

from enum import Enum

import torch
import torch.nn.functional as F

from .models import Chain


class PenaltyMethod(str, Enum):
    EXACT = "exact"
    ESTIMATE = "estimate"


class RecReduction(str, Enum):
    MEAN = "mean"  # MSE averaged over pixels and batch (torch's default; the paper's "mean squared error")
    SUM = "sum"  # squared error summed over pixels, averaged over the batch


def jacobian_sq_norm_naive(chain: Chain, x: torch.Tensor) -> torch.Tensor:
    """x (B, d) -> (B,) ||J(x)||_F^2 via the full Jacobian. Slow: for tests and benchmarks."""
    jac = torch.func.vmap(torch.func.jacrev(lambda v: chain.output(v[None])[0]))(x)  # (B, d_out, d_in)
    return jac.pow(2).sum((1, 2))


def jacobian_sq_norm_exact(chain: Chain, derivs: list[torch.Tensor]) -> torch.Tensor:
    """(B,) ||J||_F^2 from the activation derivatives of a forward pass (`Chain.__call__`).

    J = D_L W_L ... D_1 W_1 (0-based below: layer i has weight W_i and derivative D_i) factors at a
    hidden layer k as J = B A with A = D_k W_k ... D_0 W_0 and B = D_L W_L ... D_(k+1) W_(k+1), and
    ||B A||_F^2 = <B^T B, A A^T>. Only the units of layer k whose derivative is nonzero matter (for
    ReLU: the active ones), so each sample keeps just its m active units (m = the batch's largest
    count; padding entries have derivative 0 and add nothing), and k is the hidden layer where m
    is smallest. A A^T uses the batch's shared Gram W_0 W_0^T; B is built explicitly from the
    narrow side. For sigmoid or linear units nothing is inactive and this is the dense product.
    """
    weights = [layer.weight for layer in chain.layers]
    counts = [int((d != 0).sum(1).max()) for d in derivs[:-1]]
    k = min(range(len(counts)), key=lambda i: (counts[i], i))
    m = max(counts[k], 1)
    # (B, m): every unit of layer k with d != 0, in a fixed order (a stable sort; topk's order of ties
    # is not specified, and the order of the sum below decides the last bits)
    idx = torch.sort(derivs[k].abs(), dim=1, descending=True, stable=True).indices[:, :m]
    dsel = torch.gather(derivs[k], 1, idx)  # (B, m)
    g0 = weights[0] @ weights[0].T  # (n_0, n_0), shared by the batch
    if k == 0:
        gram = g0[idx[:, :, None], idx[:, None, :]] * (dsel[:, :, None] * dsel[:, None, :])
    else:
        a = dsel[:, :, None] * weights[k][idx]  # (B, m, n_(k-1)) rows of D_k W_k
        for i in range(k - 1, 0, -1):
            a = (a * derivs[i][:, None, :]) @ weights[i]
        a = a * derivs[0][:, None, :]  # (B, m, n_0); A = a W_0
        gram = a @ g0 @ a.transpose(1, 2)  # (B, m, m) = A A^T
    b = weights[k + 1].T[idx].transpose(1, 2) * derivs[k + 1][:, :, None]  # (B, n_(k+1), m)
    for i in range(k + 2, len(weights)):
        b = derivs[i][:, :, None] * (weights[i] @ b)
    btb = b.transpose(1, 2) @ b  # (B, m, m)
    return (btb * gram).sum((1, 2))


def jacobian_sq_norm_estimate(chain: Chain, x: torch.Tensor, n_projections: int = 1) -> torch.Tensor:
    """(B,) unbiased estimate of ||J(x)||_F^2 from `n_projections` Gaussian directions
    (tangents propagated beside a forward pass; `attractor_loss` shares its own pass)."""
    return _mean_sq_norm(chain(x, tangents=_directions(x, n_projections))[3])


def _directions(x: torch.Tensor, n_projections: int) -> torch.Tensor:
    """(P, B, d) Gaussian directions for the estimator."""
    return torch.randn(n_projections, *x.shape, dtype=x.dtype, device=x.device)


def _mean_sq_norm(jv: torch.Tensor) -> torch.Tensor:
    """(P, B, d_out) tangents J v -> (B,) mean over projections of ||J v||^2."""
    return jv.pow(2).sum(2).mean(0)


def jacobian_sq_norm_estimate_jvp(chain: Chain, x: torch.Tensor, n_projections: int = 1) -> torch.Tensor:
    """The same estimator with `torch.func.jvp` (a second forward pass per projection): a reference."""
    total = x.new_zeros(x.shape[0])
    for _ in range(n_projections):
        _, jv = torch.func.jvp(chain.output, (x,), (torch.randn_like(x),))  # (B, d_out)
        total = total + jv.pow(2).sum(1)
    return total / n_projections


def attractor_loss(
    chain: Chain,
    head: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    weights: tuple[float, float, float],
    penalty: PenaltyMethod = PenaltyMethod.EXACT,
    n_projections: int = 1,
    rec_reduction: RecReduction = RecReduction.MEAN,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 4 on a batch x (B, d) with labels y (B,); the reconstruction target is x itself."""
    a_rec, a_eigen, a_cls = weights
    estimate = a_eigen > 0 and penalty is PenaltyMethod.ESTIMATE
    if estimate:  # one forward pass carries the random tangents too
        recon, feats, derivs, jv = chain(x, tangents=_directions(x, n_projections))
    else:
        recon, feats, derivs = chain(x)
    sq_err = (recon - x).pow(2)
    l_rec = sq_err.mean() if rec_reduction is RecReduction.MEAN else sq_err.sum(1).mean()
    l_cls = F.cross_entropy(head(feats), y)
    loss = a_rec * l_rec + a_cls * l_cls
    l_eigen = torch.zeros(())
    if a_eigen > 0:
        sq = _mean_sq_norm(jv) if estimate else jacobian_sq_norm_exact(chain, derivs)
        l_eigen = 0.5 * sq.mean()
        loss = loss + a_eigen * l_eigen
    return loss, {"rec": l_rec.item(), "eigen": l_eigen.item(), "cls": l_cls.item()}
