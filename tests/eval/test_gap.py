"""The inference-gap decomposition on linear-Gaussian models with closed-form answers.

z ~ N(0, I_L), x | z ~ N(W z + b, s^2 I_D): log p(x) = log N(x; b, W W^T + s^2 I) and the
posterior is N(m, Lambda^-1) with precision Lambda = I + W^T W / s^2 and
m = Lambda^-1 W^T (x - b) / s^2. The best diagonal Gaussian (reverse KL) has mean m and
variances 1 / Lambda_ii, and misses log p(x) by 0.5 (sum_i log Lambda_ii - log det Lambda);
with orthogonal columns of W, Lambda is diagonal and the best diagonal Gaussian is exact.
"""

import math

import pyro
import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from nacvae.errors import ConfigError
from nacvae.eval.gap import GapBudget, fit_optimal_gaussian, gaussian_elbo, inference_gaps

S = 0.5


def linear_gaussian(w, b):
    def log_likelihood(z, x):
        return Normal(z @ w.T + b, S).log_prob(x).sum(-1)

    precision = torch.eye(w.shape[1], dtype=w.dtype) + w.T @ w / S**2

    def exact(x):
        cov = w @ w.T + S**2 * torch.eye(w.shape[0], dtype=w.dtype)
        log_px = MultivariateNormal(b, covariance_matrix=cov).log_prob(x)
        mean = torch.linalg.solve(precision, w.T @ (x - b).T).T / S**2
        return log_px, mean

    return log_likelihood, precision, exact


def problem(orthogonal: bool, batch=8, latent=3, dim=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, latent, generator=gen, dtype=torch.float64)
    if orthogonal:
        q, _ = torch.linalg.qr(w)
        w = q * torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)  # orthogonal columns, unequal norms
    b = torch.randn(dim, generator=gen, dtype=torch.float64)
    x = b + 1.5 * torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    log_lik, precision, exact = linear_gaussian(w, b)
    return (lambda z: log_lik(z, x)), precision, exact(x)


BUDGET = GapBudget(samples=200, elbo_samples=2000, fit_samples=8, lr=0.05, max_steps=3000, check_every=50,
                   patience=6, tol=1e-4)


def poor_guide(mean, batch, latent):
    """Deliberately poor amortisation: the posterior mean shrunk to a fifth, unit scale."""
    return 0.2 * mean, torch.ones(batch, latent, dtype=torch.float64)


def test_gaussian_elbo_matches_closed_form():
    log_lik, precision, (log_px, mean) = problem(orthogonal=False)
    loc, scale = poor_guide(mean, *mean.shape)
    gen = torch.Generator().manual_seed(1)
    est, se = gaussian_elbo(log_lik, loc, scale, 20000, gen)
    # Independent computation: ELBO = log p(x) - KL(q || posterior), both Gaussians.
    post = MultivariateNormal(mean, precision_matrix=precision)
    q = MultivariateNormal(loc, scale_tril=torch.diag_embed(scale))
    expected = log_px - torch.distributions.kl_divergence(q, post)
    assert (se > 0).all() and (se < 0.5).all()
    z = (est - expected) / se
    assert z.abs().max() < 4.5 and z.mean().abs() < 4.5 / len(z) ** 0.5, z


def test_optimum_reaches_log_px_when_posterior_is_diagonal():
    pyro.set_rng_seed(0)
    log_lik, precision, (log_px, mean) = problem(orthogonal=True)
    assert torch.allclose(precision, torch.diag(precision.diagonal()), atol=1e-12)
    loc, scale = poor_guide(mean, *mean.shape)
    r = inference_gaps(log_lik, loc, scale, BUDGET, torch.Generator().manual_seed(0))
    # The fit finds the exact posterior ...
    loc_star, scale_star, _ = fit_optimal_gaussian(log_lik, loc, scale, BUDGET, torch.Generator().manual_seed(0))
    assert torch.allclose(loc_star, mean, atol=0.02)
    assert torch.allclose(scale_star, precision.diagonal().rsqrt().expand_as(scale_star), rtol=0.03)
    # ... so log p(x) is estimated exactly and the approximation gap is 0 within MC error.
    assert torch.allclose(r["loglik"], log_px, atol=0.01)
    approx = r["loglik"] - r["elbo_optimal"]
    se = r["elbo_optimal_se"]
    assert (approx.abs() < 4.5 * se + 0.01).all(), (approx, se)
    assert abs(approx.mean().item()) < 4.5 * se.pow(2).mean().sqrt().item() / len(se) ** 0.5 + 0.01
    # The poor guide leaves a clear amortisation gap, equal to KL(q || posterior).
    amort = r["elbo_optimal"] - r["elbo_amortised"]
    post = MultivariateNormal(mean, precision_matrix=precision)
    q = MultivariateNormal(loc, scale_tril=torch.diag_embed(scale))
    kl = torch.distributions.kl_divergence(q, post)
    assert (amort > 0.5).all()
    se = (r["elbo_optimal_se"] ** 2 + r["elbo_amortised_se"] ** 2).sqrt()
    assert ((amort - kl).abs() < 4.5 * se + 0.01).all(), (amort, kl, se)


def test_approximation_gap_matches_mean_field_closed_form():
    pyro.set_rng_seed(0)
    log_lik, precision, (log_px, mean) = problem(orthogonal=False)
    loc, scale = poor_guide(mean, *mean.shape)
    r = inference_gaps(log_lik, loc, scale, BUDGET, torch.Generator().manual_seed(0))
    expected_gap = 0.5 * (precision.diagonal().log().sum() - torch.logdet(precision)).item()
    assert expected_gap > 0.1  # the posterior really is correlated
    gap = log_px - r["elbo_optimal"]
    se = r["elbo_optimal_se"]
    assert ((gap - expected_gap).abs() < 4.5 * se + 0.01).all(), (gap, expected_gap, se)
    # The importance-weighted estimate with q* as the proposal closes most of that gap.
    assert (r["loglik"] - log_px).mean().abs().item() < 0.5 * expected_gap


def test_amortised_guide_at_the_optimum_has_no_amortisation_gap():
    pyro.set_rng_seed(0)
    log_lik, precision, (log_px, mean) = problem(orthogonal=True)
    scale = precision.diagonal().rsqrt().expand_as(mean).clone()
    r = inference_gaps(log_lik, mean, scale, BUDGET, torch.Generator().manual_seed(0))
    diff = r["elbo_optimal"] - r["elbo_amortised"]
    se = (r["elbo_optimal_se"] ** 2 + r["elbo_amortised_se"] ** 2).sqrt()
    assert (diff.abs() < 4.5 * se + 0.01).all(), (diff, se)


def test_fit_leaves_other_gradients_alone():
    w = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 4, dtype=torch.float64)

    def log_lik(z):
        return Normal(z @ w.T, 1.0).log_prob(x).sum(-1)

    fit_optimal_gaussian(log_lik, torch.zeros(3, 2, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64),
                         GapBudget(max_steps=5, check_every=5))
    assert w.grad is None


@pytest.mark.parametrize("field, value", [("samples", 0), ("max_steps", -1), ("lr", 0.0), ("tol", float("nan")),
                                          ("fit_samples", 1.5)])
def test_budget_validation(field, value):
    with pytest.raises(ConfigError, match=field.replace("_", "-")):
        GapBudget(**{field: value}).validate()
