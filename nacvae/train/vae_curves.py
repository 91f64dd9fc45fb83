"""Convergence curves of a VAE run: test ELBO and a cheap log p(x) at fixed fractions of training.

``curve_points`` = n puts a point after round(k/n * total) steps, k = 1..n, so runs of
any length (and from any encoder) are compared at the same fractions. Each point
evaluates the same fixed test images (the first ``curve_images`` of the split, as
observed) with the network in eval mode: the one-sample ELBO with analytic KL, and the
importance-weighted log p(x) with ``curve_samples`` particles, both from a fixed seed so
that two runs' curves differ by their weights, not their noise. The training RNG streams
are left as they were.
"""

from __future__ import annotations

import pyro
import torch

from nacvae.models.vae import VAE, analytic_kl

__all__ = ["curve_steps", "curve_point"]


def curve_steps(total_steps: int, points: int) -> dict[int, float]:
    """{step: fraction of training} for ``points`` evenly spaced points, the last at ``total_steps``."""
    if points <= 0 or total_steps <= 0:
        return {}
    steps: dict[int, float] = {}
    for k in range(1, points + 1):
        step = max(1, round(k * total_steps / points))
        steps.setdefault(step, step / total_steps)
    return steps


@torch.no_grad()
def curve_point(vae: VAE, x: torch.Tensor, samples: int, seed: int, batch_size: int = 250) -> dict[str, float]:
    """Means over ``x`` of the one-sample ELBO, KL, reconstruction term and the
    ``samples``-particle importance-weighted log p(x) (0 particles: no log p(x))."""
    from nacvae.eval.loglik import importance_log_likelihood

    was = vae.training
    vae.eval()
    elbo = kl = loglik = 0.0
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []), \
                pyro.get_param_store().scope():
            pyro.set_rng_seed(seed % 2**32)
            gen = torch.Generator(device=x.device).manual_seed(seed)
            for xb in x.split(batch_size):
                mu, sigma = vae.encode(xb)
                z = mu + sigma * torch.randn(mu.shape, generator=gen, device=mu.device, dtype=mu.dtype)
                kl_b = analytic_kl(mu, sigma).double()
                elbo += (vae.likelihood_dist(z).log_prob(xb).double() - kl_b).sum().item()
                kl += kl_b.sum().item()
                if samples > 0:
                    loglik += importance_log_likelihood(vae.model, vae.guide, xb, samples).double().sum().item()
    finally:
        vae.train(was)
    n = x.shape[0]
    point = {"elbo": elbo / n, "kl": kl / n, "reconstruction": (elbo + kl) / n}
    if samples > 0:
        point["loglik_nats"] = loglik / n
    return point
