"""The VAE's training loss in plain torch: the negative ELBO of one reparameterised sample.

For a batch x of B images, with q(z|x) = N(mu, diag sigma^2) from ``VAE.encode`` and
z = mu + sigma * eps, eps ~ N(0, I) drawn from torch's global generator (the draw that
``Normal(mu, sigma).rsample()`` in ``VAE.guide`` makes),

    meanfield:  loss = -(1/B) sum_b [ log p(x_b|z_b) - beta * KL(q(z|x_b) || N(0, I)) ]
    trace:      loss = -(1/B) sum_b [ log p(x_b|z_b) + beta * (log N(z_b; 0, I) - log q(z_b|x_b)) ]

These are the values, and (all sites being reparameterised) the gradients, of Pyro's
``TraceMeanField_ELBO`` and ``Trace_ELBO`` ``differentiable_loss(model, guide, x) / B``
with the latent site scaled by beta (tests/train/test_elbo.py compares both). Building
them from the terms the model computes anyway skips Pyro's tracing, whose NaN checks and
bookkeeping read values back to the host several times per step: this loss never waits
for the device. Call it with distribution argument checks off (``pyro.validation_enabled(
False)``, as the training loop does), since those checks read values back too.
"""

from __future__ import annotations

import math

import torch

from nacvae.errors import ConfigError
from nacvae.models.vae import VAE, analytic_kl

__all__ = ["ESTIMATORS", "negative_elbo"]

ESTIMATORS = ("meanfield", "trace")


_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _log_normal(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log N(z; loc, diag scale^2) summed over the last dimension."""
    return (-((z - loc) ** 2) / (2.0 * scale**2) - torch.log(scale) - _HALF_LOG_2PI).sum(-1)


def _log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return (-0.5 * z**2 - _HALF_LOG_2PI).sum(-1)


def negative_elbo(vae: VAE, x: torch.Tensor, kl_weight: float = 1.0, estimator: str = "meanfield"):
    """(loss per image, reconstruction sum, KL sum) for the batch ``x`` as the model observes it.

    The loss is differentiable; the reconstruction term sum_b log p(x_b|z_b) and the
    analytic KL sum (beta = 1, whatever the estimator) are detached, for logging.
    """
    if estimator not in ESTIMATORS:
        raise ConfigError(f"Unknown --elbo '{estimator}'; choose one of {', '.join(ESTIMATORS)}.")
    mu, sigma = vae.encode(x)
    eps = torch.empty(mu.shape, dtype=mu.dtype, device=mu.device).normal_()
    z = mu + eps * sigma
    rec = vae.likelihood_dist(z).log_prob(x)  # [B]
    kl = analytic_kl(mu, sigma)  # [B]
    if estimator == "meanfield":
        latent = -kl
    else:
        latent = _log_standard_normal(z) - _log_normal(z, mu, sigma)
    loss = -(rec + kl_weight * latent).sum() / x.shape[0]
    return loss, rec.detach().sum(), kl.detach().sum()
