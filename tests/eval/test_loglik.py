"""Importance-weighted log-likelihood on plain Pyro models with a closed-form marginal.

Linear-Gaussian model: z ~ N(0, I_L), x | z ~ N(W z + b, s^2 I_D), so
x ~ N(b, W W^T + s^2 I) and the posterior is Gaussian with
Sigma = (I + W^T W / s^2)^-1, mu = Sigma W^T (x - b) / s^2.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from nacvae.errors import ConfigError
from nacvae.eval.loglik import importance_log_likelihood

L, D, B = 2, 3, 6
S = 0.5
gen = torch.Generator().manual_seed(0)
W = torch.randn(D, L, generator=gen, dtype=torch.float64)
BIAS = torch.randn(D, generator=gen, dtype=torch.float64)
X = BIAS + torch.randn(B, D, generator=gen, dtype=torch.float64) * 1.5
POST_COV = torch.linalg.inv(torch.eye(L, dtype=torch.float64) + W.T @ W / S**2)
POST_TRIL = torch.linalg.cholesky(POST_COV)


def true_log_px(x):
    cov = W @ W.T + S**2 * torch.eye(D, dtype=torch.float64)
    return dist.MultivariateNormal(BIAS, covariance_matrix=cov).log_prob(x)


def post_mean(x):
    return (x - BIAS) @ W @ POST_COV / S**2  # POST_COV is symmetric


def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(L), x.new_ones(L)).to_event(1))
        pyro.sample("x", dist.Normal(z @ W.T + BIAS, S).to_event(1), obs=x)


def exact_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.MultivariateNormal(post_mean(x), scale_tril=POST_TRIL))


def rough_guide(x):
    """A fixed linear guide: shrunk mean, inflated diagonal scale."""
    sd = POST_COV.diagonal().sqrt()
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(0.8 * post_mean(x), 1.3 * sd).to_event(1))


def model_feature_plate(x):
    """Same model with the data plate at dim -2, a nested feature plate at -1 and no to_event."""
    with pyro.plate("data", x.shape[0], dim=-2):
        z = pyro.sample("z", dist.Normal(x.new_zeros(L), x.new_ones(L)).to_event(1))
        with pyro.plate("features", D, dim=-1):
            pyro.sample("x", dist.Normal((z @ W.T + BIAS).squeeze(-2), S), obs=x)


def exact_guide_feature_plate(x):
    with pyro.plate("data", x.shape[0], dim=-2):
        pyro.sample("z", dist.MultivariateNormal(post_mean(x).unsqueeze(-2), scale_tril=POST_TRIL))


def model_global_latent(x):
    shift = pyro.sample("shift", dist.Normal(x.new_zeros(()), 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(shift + BIAS, 1.0).to_event(1), obs=x)


def guide_global_latent(x):
    pyro.sample("shift", dist.Normal(x.new_zeros(()), 1.0))


@pytest.fixture(autouse=True)
def seeded():
    pyro.set_rng_seed(0)


@pytest.mark.parametrize("k", [1, 3, 50])
def test_exact_posterior_gives_exact_answer(k):
    est = importance_log_likelihood(model, exact_guide, X, k)
    assert est.shape == (B,)
    torch.testing.assert_close(est, true_log_px(X), atol=1e-9, rtol=0)


def test_nested_plates_and_other_layouts():
    est = importance_log_likelihood(model_feature_plate, exact_guide_feature_plate, X, 4)
    torch.testing.assert_close(est, true_log_px(X), atol=1e-9, rtol=0)


def test_converges_with_more_particles():
    truth = true_log_px(X)
    err_small = (importance_log_likelihood(model, rough_guide, X, 10) - truth).abs().mean()
    err_large = (importance_log_likelihood(model, rough_guide, X, 5000) - truth).abs().mean()
    assert err_large < err_small
    assert err_large < 0.01


def test_one_particle_is_the_single_sample_elbo_term():
    pyro.set_rng_seed(123)
    est = importance_log_likelihood(model, rough_guide, X, 1)
    pyro.set_rng_seed(123)
    guide_trace = poutine.trace(rough_guide).get_trace(X)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(X)
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    elbo_term = (
        model_trace.nodes["z"]["log_prob"] + model_trace.nodes["x"]["log_prob"] - guide_trace.nodes["z"]["log_prob"]
    )
    torch.testing.assert_close(est, elbo_term, atol=1e-12, rtol=0)


def test_chunked_equals_unchunked():
    exact = importance_log_likelihood(model, exact_guide, X, 50, chunk_size=7)
    torch.testing.assert_close(exact, true_log_px(X), atol=1e-9, rtol=0)
    k = 2000
    whole = importance_log_likelihood(model, rough_guide, X, k)
    chunked = importance_log_likelihood(model, rough_guide, X, k, chunk_size=7)
    # independent estimates: their difference is within a few Monte-Carlo standard errors,
    # the error at K measured from repeated estimates at K/10 (it shrinks like 1/sqrt(K))
    repeats = torch.stack([importance_log_likelihood(model, rough_guide, X, k // 10) for _ in range(20)])
    se = repeats.std(0) / math.sqrt(10)
    assert ((whole - chunked).abs() < 5 * math.sqrt(2) * se).all()
    pyro.set_rng_seed(5)
    one = importance_log_likelihood(model, rough_guide, X, 20, chunk_size=1)
    pyro.set_rng_seed(5)
    again = importance_log_likelihood(model, rough_guide, X, 20, chunk_size=1)
    torch.testing.assert_close(one, again, atol=0, rtol=0)


def test_float32_and_default_chunking():
    x = X.float()
    est = importance_log_likelihood(model_f32, exact_guide_f32, x, 100, element_budget=64)
    assert est.dtype == torch.float32
    torch.testing.assert_close(est.double(), true_log_px(X), atol=1e-4, rtol=0)


def model_f32(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(L), x.new_ones(L)).to_event(1))
        pyro.sample("x", dist.Normal(z @ W.T.float() + BIAS.float(), S).to_event(1), obs=x)


def exact_guide_f32(x):
    with pyro.plate("data", x.shape[0]):
        loc = post_mean(x.double()).float()
        pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=POST_TRIL.float()))


def test_global_latent_is_rejected():
    with pytest.raises(ConfigError, match="outside the plate 'data'"):
        importance_log_likelihood(model_global_latent, guide_global_latent, X, 5)


def test_model_latent_missing_from_guide_is_rejected():
    def empty_guide(x):
        pass

    with pytest.raises(ConfigError, match="no matching site"):
        importance_log_likelihood(model, empty_guide, X, 5)


def test_subsampled_data_plate_is_rejected():
    def sub_model(x):
        with pyro.plate("data", x.shape[0], subsample_size=2) as idx:
            z = pyro.sample("z", dist.Normal(x.new_zeros(L), x.new_ones(L)).to_event(1))
            pyro.sample("x", dist.Normal(z @ W.T + BIAS, S).to_event(1), obs=x[idx])

    def sub_guide(x):
        with pyro.plate("data", x.shape[0], subsample_size=2):
            pyro.sample("z", dist.Normal(x.new_zeros(L), x.new_ones(L)).to_event(1))

    with pytest.raises(ConfigError, match="without subsampling"):
        importance_log_likelihood(sub_model, sub_guide, X, 5)


def test_bad_arguments():
    with pytest.raises(ConfigError):
        importance_log_likelihood(model, exact_guide, X, 0)
    with pytest.raises(ConfigError):
        importance_log_likelihood(model, exact_guide, X, 5, chunk_size=0)


def test_log_k_normalisation():
    # a guide equal to the prior with a constant likelihood gives weights all equal to log p(x)
    def flat_model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x.new_zeros(L), x.new_ones(L)).to_event(1))
            pyro.sample("x", dist.Normal(BIAS, 1.0).to_event(1), obs=x)

    def prior_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x.new_zeros(L), x.new_ones(L)).to_event(1))

    est = importance_log_likelihood(flat_model, prior_guide, X, 37, chunk_size=5)
    expected = dist.Normal(BIAS, 1.0).log_prob(X).sum(-1)
    torch.testing.assert_close(est, expected, atol=1e-12, rtol=0)
    assert math.isfinite(est.sum().item())
