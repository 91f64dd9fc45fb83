"""Importance-weighted log-likelihood of a Pyro model, per example.

log p(x_i) ~= logsumexp_k [log p(x_i, z_ik) - log q(z_ik | x_i)] - log K,  z_ik ~ q(z | x_i).

Particles are vectorised: model and guide run inside an outer
``pyro.plate("particles", n)`` placed left of every plate they use (as
``Trace_ELBO(vectorize_particles=True)`` does), so each site's log-prob comes out with
batch shape [n, ..., B] and is reduced to [n, B]. Chunks of particles are combined with
a running logsumexp.
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

from nacvae.errors import ConfigError
from nacvae.models.vae import VAE, active_units, analytic_kl
from nacvae.progress import bar

__all__ = ["importance_log_likelihood", "evaluate_vae", "DEFAULT_ELEMENT_BUDGET"]

# Default chunking keeps chunk_size * (elements of the largest site for the whole
# batch) under this many elements; the model's own activations may be several times
# larger.
DEFAULT_ELEMENT_BUDGET = 2**22
DATA_PLATE = "data"


def _sample_sites(trace):
    return [site for site in trace.nodes.values() if site["type"] == "sample"]


def _data_frame(site):
    for frame in site["cond_indep_stack"]:
        if frame.name == DATA_PLATE:
            return frame
    return None


def _inspect(model, guide, x):
    """One unvectorised pass: check the per-example structure, return (nesting, data dim, largest site)."""
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    guide_trace, model_trace = prune_subsample_sites(guide_trace), prune_subsample_sites(model_trace)
    batch = x.shape[0]
    data_dim = None
    nesting = 0
    largest = 1
    for role, trace in (("guide", guide_trace), ("model", model_trace)):
        for site in _sample_sites(trace):
            frame = _data_frame(site)
            if frame is None:
                raise ConfigError(
                    f"Sample site '{site['name']}' of the {role} is outside the plate '{DATA_PLATE}', "
                    "so log p(x) does not split into per-example terms."
                )
            if frame.dim is None or frame.size != batch or (frame.full_size not in (None, frame.size)):
                raise ConfigError(
                    f"The plate '{DATA_PLATE}' must be vectorised over all {batch} examples of x "
                    "without subsampling."
                )
            if data_dim is not None and frame.dim != data_dim:
                raise ConfigError(f"The plate '{DATA_PLATE}' must use the same dim in the model and the guide.")
            data_dim = frame.dim
            dims = [f.dim for f in site["cond_indep_stack"] if f.vectorized]
            nesting = max([nesting] + [-d for d in dims])
            largest = max(largest, site["fn"].shape().numel())
            if role == "model" and not site["is_observed"] and site["name"] not in guide_trace.nodes:
                raise ConfigError(f"Latent site '{site['name']}' of the model has no matching site in the guide.")
    if data_dim is None:
        raise ConfigError(f"Neither the model nor the guide has a sample site inside the plate '{DATA_PLATE}'.")
    return nesting, data_dim, largest


def _per_example(site, particle_dim, data_dim, num, batch):
    """Reduce a site's log_prob [.., n, .., B, ..] to [n, B]."""
    lp = site["log_prob"]
    rank = -particle_dim
    lp = lp.reshape((1,) * (rank - lp.dim()) + tuple(lp.shape))
    lp = lp.movedim((particle_dim, data_dim), (0, 1))
    lp = lp.reshape(lp.shape[0], lp.shape[1], -1).sum(-1)
    return lp.expand(num, batch)


def _log_weights(model, guide, x, num, particle_dim, data_dim):
    batch = x.shape[0]
    particles = pyro.plate("particles", num, dim=particle_dim, device=x.device)
    guide_trace = poutine.trace(particles(guide)).get_trace(x)
    model_trace = poutine.trace(poutine.replay(particles(model), trace=guide_trace)).get_trace(x)
    guide_trace, model_trace = prune_subsample_sites(guide_trace), prune_subsample_sites(model_trace)
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    log_w = 0.0
    for site in _sample_sites(model_trace):
        log_w = log_w + _per_example(site, particle_dim, data_dim, num, batch)
    for site in _sample_sites(guide_trace):
        if not site["is_observed"]:
            log_w = log_w - _per_example(site, particle_dim, data_dim, num, batch)
    return log_w


def importance_log_likelihood(
    model,
    guide,
    x: torch.Tensor,
    num_samples: int,
    chunk_size: int | None = None,
    element_budget: int = DEFAULT_ELEMENT_BUDGET,
) -> torch.Tensor:
    """Importance-sampled estimate of log p(x_i) for each example, shape [B].

    ``model(x)`` and ``guide(x)`` may be any Pyro pair whose sample sites all lie in a
    vectorised ``pyro.plate("data", x.shape[0])`` (dim -1 or any other) without
    subsampling; a site outside it (a global latent) raises ``ConfigError``. Site
    log-probs are taken as the trace computes them (including any ``poutine.scale``
    or mask). Particles are drawn ``chunk_size`` at a time (default: as many as keep
    ``chunk_size`` times the largest site's size, whole batch, under ``element_budget``) with Pyro's
    global RNG, so ``pyro.set_rng_seed`` makes the result reproducible. One extra
    unvectorised pass checks the structure; it does not change the RNG stream.
    """
    if int(num_samples) != num_samples or num_samples < 1:
        raise ConfigError(f"num_samples must be a positive integer, got {num_samples!r}.")
    if chunk_size is not None and (int(chunk_size) != chunk_size or chunk_size < 1):
        raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] < 1:
        raise ConfigError("x must be a tensor with at least one example along its first dimension.")
    num_samples = int(num_samples)
    accelerator = x.device.type != "cpu"
    with torch.no_grad(), poutine.block():
        with torch.random.fork_rng(
            devices=[x.device] if accelerator else [], device_type=x.device.type if accelerator else "cuda"
        ):
            nesting, data_dim, largest = _inspect(model, guide, x)
        if chunk_size is None:
            chunk_size = max(1, element_budget // largest)
        chunk_size = min(int(chunk_size), num_samples)
        particle_dim = -(nesting + 1)
        total = None
        done = 0
        while done < num_samples:
            num = min(chunk_size, num_samples - done)
            log_w = _log_weights(model, guide, x, num, particle_dim, data_dim)
            part = torch.logsumexp(log_w, dim=0)
            total = part if total is None else torch.logaddexp(total, part)
            done += num
    return total - math.log(num_samples)


def images_for(vae: VAE, images: torch.Tensor, device, dtype) -> torch.Tensor:
    x = images.to(device=device, dtype=dtype)
    if vae.likelihood == "logistic":
        ok = bool(((x >= 0) & (x <= 255) & (x == x.round())).all())
        what = "integer levels in [0, 255]"
    else:
        ok = bool(((x == 0) | (x == 1)).all())
        what = "binary values in {0, 1}"
    if not ok:
        raise ConfigError(f"A VAE with a {vae.likelihood} likelihood evaluates {what}.")
    return x


def evaluate_vae(
    vae: VAE,
    images: torch.Tensor,
    num_samples: int = 1000,
    batch_size: int = 100,
    chunk_size: int | None = None,
) -> dict:
    """Test-set measures of a trained VAE, means over ``images``.

    ``images`` is [N, C, H, W] in the VAE's data format (levels 0..255 for the logistic
    likelihood, {0, 1} for Bernoulli; any dtype). Returns

    - ``loglik_nats``: mean importance-weighted log p(x) with ``num_samples`` particles;
    - ``bits_per_dim``: -loglik_nats / (C*H*W*ln 2), for binary data the same formula
      over the binary pixels;
    - ``elbo``: mean of E_q[log p(x|z)] estimated with one z ~ q(z|x) per image minus the
      analytic KL (not the K-particle bound);
    - ``kl``: mean analytic KL(q(z|x) || N(0, I));
    - ``active_units``: over all images, threshold 0.01;
    - ``samples`` (= num_samples) and ``num_images``.

    The VAE runs in eval mode (restored afterwards) and inside a private Pyro param
    store scope, so the global store's contents neither matter nor change. Randomness
    comes from the global RNG (``pyro.set_rng_seed``).
    """
    if images.dim() != 4 or tuple(images.shape[1:]) != tuple(vae.image_shape):
        raise ConfigError(
            f"images must have shape [N, {', '.join(map(str, vae.image_shape))}], got {tuple(images.shape)}."
        )
    if images.shape[0] < 1:
        raise ConfigError("evaluate_vae needs at least one image.")
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size!r}.")
    ref = vae.norm_mean
    was_training = vae.training
    vae.eval()
    loglik, elbo, kl, mus = [], [], [], []
    try:
        with torch.no_grad(), pyro.get_param_store().scope(), \
                bar(total=images.shape[0], desc="log p(x)", unit="image") as progress:
            for start in range(0, images.shape[0], int(batch_size)):
                x = images_for(vae, images[start : start + int(batch_size)], ref.device, ref.dtype)
                loglik.append(importance_log_likelihood(vae.model, vae.guide, x, num_samples, chunk_size))
                mu, sigma = vae.encode(x)
                kl_b = analytic_kl(mu, sigma)
                z = mu + sigma * torch.randn_like(mu)
                elbo.append(vae.likelihood_dist(z).log_prob(x) - kl_b)
                kl.append(kl_b)
                mus.append(mu)
                progress.update(x.shape[0])
    finally:
        vae.train(was_training)
    loglik_t = torch.cat(loglik).double()
    c, h, w = vae.image_shape
    mean_ll = loglik_t.mean().item()
    return {
        "loglik_nats": mean_ll,
        "bits_per_dim": -mean_ll / (c * h * w * math.log(2.0)),
        "elbo": torch.cat(elbo).double().mean().item(),
        "kl": torch.cat(kl).double().mean().item(),
        "active_units": active_units(torch.cat(mus)),
        "samples": int(num_samples),
        "num_images": int(images.shape[0]),
    }
