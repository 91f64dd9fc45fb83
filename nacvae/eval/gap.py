"""The inference gap of a VAE, split into its approximation and amortisation parts.

For an image x, with q(z|x) the encoder's Gaussian and q*(z) the best diagonal Gaussian
for x alone (Cremer et al., 2018):

    log p(x) - ELBO(q)  =  [log p(x) - ELBO(q*)]  +  [ELBO(q*) - ELBO(q)]
                            approximation gap        amortisation gap

The approximation gap is what a diagonal Gaussian cannot do for this decoder; the
amortisation gap is what the encoder loses by predicting q from x in one pass instead of
fitting it. q* is found by Adam on its mean and log-scale directly, all images of a batch
at once, starting from the encoder's q (so the fit can only improve on it, up to noise).

ELBO(q) = E_q[log p(x|z)] - KL(q || N(0, I)) is estimated with reparameterised samples
and the analytic KL. log p(x) is the importance-weighted estimate of
``nacvae.eval.loglik.importance_log_likelihood`` with q* as the proposal: with K samples
from q* it is at least ELBO(q*) in expectation (Burda et al.), so the approximation gap
is non-negative up to Monte-Carlo error, which it need not be with the encoder's q.

The maths works on any decoder given as ``log_likelihood(z) -> log p(x|z)``, where z has
shape [..., B, L] and the result [..., B]; ``vae_gaps`` applies it to a ``VAE``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable

import pyro
import pyro.distributions as dist
import torch

from nacvae.checks import check_int, check_seed
from nacvae.devices import resolve_device
from nacvae.errors import ConfigError
from nacvae.eval.encoders import record as record_result
from nacvae.eval.loglik import DEFAULT_ELEMENT_BUDGET, images_for, importance_log_likelihood
from nacvae.eval.vae_runs import load_vae_with_test_images
from nacvae.models.vae import analytic_kl
from nacvae.progress import bar

__all__ = ["GapBudget", "gaussian_elbo", "fit_optimal_gaussian", "inference_gaps", "vae_gaps", "evaluate_gap_run",
           "GAP_KEYS"]

LogLikelihood = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class GapBudget:
    """How hard q* is fitted and how precisely the three quantities are estimated.

    Adam (``lr``) takes steps of ``fit_samples`` reparameterised samples per image; every
    ``check_every`` steps the mean ELBO estimate of that window is compared with the best
    window so far. A window that fails to beat it by more than ``tol`` nats per image
    halves the learning rate (so that the noisy iterates settle on the optimum); fitting
    stops at the ``patience``-th such window, or after ``max_steps``. ``elbo_samples`` samples per
    image estimate each ELBO afterwards, ``samples`` importance samples log p(x).
    """

    samples: int = 1000
    elbo_samples: int = 100
    fit_samples: int = 4
    lr: float = 0.05
    max_steps: int = 2000
    check_every: int = 50
    patience: int = 6
    tol: float = 0.01

    def validate(self) -> None:
        for name in ("samples", "elbo_samples", "fit_samples", "max_steps", "check_every", "patience"):
            value = getattr(self, name)
            check_int(name.replace("_", "-"), value)
        for name in ("lr", "tol"):
            value = getattr(self, name)
            least_ok = value > 0 if name == "lr" else value >= 0
            if not (isinstance(value, (int, float)) and math.isfinite(value) and least_ok):
                raise ConfigError(f"--{name} must be a {'positive' if name == 'lr' else 'non-negative'} number, "
                                  f"got {value!r}.")


def _draw(loc: torch.Tensor, scale: torch.Tensor, num: int, generator: torch.Generator | None) -> torch.Tensor:
    eps = torch.randn((num, *loc.shape), generator=generator, device=loc.device, dtype=loc.dtype)
    return loc + scale * eps


def gaussian_elbo(log_likelihood: LogLikelihood, loc: torch.Tensor, scale: torch.Tensor, num_samples: int,
                  generator: torch.Generator | None = None, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """ELBO of q = N(loc, diag scale^2) per image and its Monte-Carlo standard error, each
    [B] float64: the mean of log p(x|z) over ``num_samples`` draws z ~ q, minus the
    analytic KL(q || N(0, I))."""
    total = torch.zeros(loc.shape[0], dtype=torch.float64, device=loc.device)
    squares = torch.zeros_like(total)
    done = 0
    with torch.no_grad():
        while done < num_samples:
            n = min(chunk, num_samples - done)
            ll = log_likelihood(_draw(loc, scale, n, generator)).double()
            total += ll.sum(0)
            squares += ll.pow(2).sum(0)
            done += n
    mean = total / num_samples
    var = (squares / num_samples - mean.pow(2)).clamp(min=0) * num_samples / max(num_samples - 1, 1)
    return mean - analytic_kl(loc, scale).double(), (var / num_samples).sqrt()


def fit_optimal_gaussian(log_likelihood: LogLikelihood, loc: torch.Tensor, scale: torch.Tensor,
                         budget: GapBudget = GapBudget(), generator: torch.Generator | None = None):
    """q* = N(loc*, diag scale*^2) for every image, fitted from the start ``(loc, scale)``.

    Returns ``(loc*, scale*, steps)``. Only the variational parameters are optimised:
    gradients are taken with respect to them alone, so the decoder's parameters keep
    whatever ``.grad`` they had.
    """
    budget.validate()
    loc_p = loc.detach().clone().requires_grad_(True)
    log_scale_p = scale.detach().log().clone().requires_grad_(True)
    params = [loc_p, log_scale_p]
    optimizer = torch.optim.Adam(params, lr=budget.lr)
    best, stale, window, steps = -math.inf, 0, 0.0, 0
    with torch.enable_grad():
        for step in range(budget.max_steps):
            s = log_scale_p.exp()
            z = _draw(loc_p, s, budget.fit_samples, generator)
            elbo = log_likelihood(z).mean(0) - analytic_kl(loc_p, s)
            # Summed over images: each image's parameters get their own ELBO's gradient.
            grads = torch.autograd.grad(-elbo.sum(), params)
            for p, g in zip(params, grads):
                p.grad = g
            optimizer.step()
            steps = step + 1
            window += elbo.detach().double().mean().item()
            if steps % budget.check_every == 0:
                mean = window / budget.check_every
                window = 0.0
                if mean > best + budget.tol:
                    best = mean
                else:
                    stale += 1
                    if stale >= budget.patience:
                        break
                    for group in optimizer.param_groups:
                        group["lr"] *= 0.5
    return loc_p.detach(), log_scale_p.detach().exp(), steps


def _gaussian_pair(log_likelihood: LogLikelihood, loc: torch.Tensor, scale: torch.Tensor):
    """A Pyro model (prior N(0, I), likelihood as a factor) and a guide q = N(loc, scale)
    for ``importance_log_likelihood``; the guide ignores its argument."""
    latent_dim = loc.shape[-1]

    def model(x):
        with pyro.plate("data", loc.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(loc.new_zeros(latent_dim), 1.0).expand([loc.shape[0], latent_dim])
                            .to_event(1))
            pyro.factor("x", log_likelihood(z))

    def guide(x):
        with pyro.plate("data", loc.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    return model, guide


def inference_gaps(log_likelihood: LogLikelihood, loc: torch.Tensor, scale: torch.Tensor,
                   budget: GapBudget = GapBudget(), generator: torch.Generator | None = None,
                   chunk_size: int | None = None) -> dict[str, torch.Tensor]:
    """Per-image (float64, [B]) ``loglik``, ``elbo_amortised``, ``elbo_optimal``, the two
    ELBOs' Monte-Carlo standard errors (``*_se``) and the fit's ``steps``, for images whose amortised posterior is N(loc, diag scale^2).

    ``generator`` drives the fit and the ELBO samples; the importance samples come from
    Pyro's global RNG (``pyro.set_rng_seed``), as in ``importance_log_likelihood``;
    ``chunk_size`` is passed on to it.
    """
    budget.validate()
    if loc.dim() != 2 or loc.shape != scale.shape or loc.shape[0] < 1:
        raise ConfigError(f"loc and scale must both be [B, L] with B >= 1, got {tuple(loc.shape)} and "
                          f"{tuple(scale.shape)}.")
    elbo_q, se_q = gaussian_elbo(log_likelihood, loc, scale, budget.elbo_samples, generator)
    loc_star, scale_star, steps = fit_optimal_gaussian(log_likelihood, loc, scale, budget, generator)
    elbo_star, se_star = gaussian_elbo(log_likelihood, loc_star, scale_star, budget.elbo_samples, generator)
    model, guide = _gaussian_pair(log_likelihood, loc_star, scale_star)
    loglik = importance_log_likelihood(model, guide, loc_star, budget.samples, chunk_size=chunk_size).double()
    return {"loglik": loglik, "elbo_amortised": elbo_q, "elbo_optimal": elbo_star,
            "elbo_amortised_se": se_q, "elbo_optimal_se": se_star, "steps": torch.full_like(loglik, float(steps))}


def vae_gaps(vae, images: torch.Tensor, budget: GapBudget = GapBudget(), batch_size: int = 100,
             seed: int = 0) -> dict:
    """The gaps of a trained ``VAE`` on ``images`` (its observation format, [N, C, H, W]),
    means over the images; see ``inference_gaps``. Batches of ``batch_size`` images are
    fitted together. The VAE runs in eval mode (restored afterwards), inside a private
    Pyro param store scope."""
    budget.validate()
    if images.dim() != 4 or tuple(images.shape[1:]) != tuple(vae.image_shape) or images.shape[0] < 1:
        raise ConfigError(f"images must have shape [N, {', '.join(map(str, vae.image_shape))}] with N >= 1, "
                          f"got {tuple(images.shape)}.")
    check_int("batch-size", batch_size)
    ref = vae.norm_mean
    generator = torch.Generator(device=ref.device).manual_seed(int(seed))
    pyro.set_rng_seed(int(seed) % 2**32)
    pixels = math.prod(vae.image_shape) * (2 if vae.likelihood == "logistic" else 1)
    parts: dict[str, list[torch.Tensor]] = {}
    was_training = vae.training
    vae.eval()
    try:
        with pyro.get_param_store().scope(), bar(total=images.shape[0], desc="inference gap", unit="image") as progress:
            for start in range(0, images.shape[0], batch_size):
                x = images_for(vae, images[start:start + batch_size], ref.device, ref.dtype)
                with torch.no_grad():
                    mu, sigma = vae.encode(x)
                chunk = max(1, DEFAULT_ELEMENT_BUDGET // (x.shape[0] * pixels))

                def log_likelihood(z, x=x):
                    return vae.likelihood_dist(z).log_prob(x)

                for key, value in inference_gaps(log_likelihood, mu, sigma, budget, generator, chunk).items():
                    parts.setdefault(key, []).append(value)
                progress.update(x.shape[0])
    finally:
        vae.train(was_training)
    means = {key: torch.cat(values).mean().item() for key, values in parts.items()}
    return {
        "loglik_nats": means["loglik"],
        "elbo_amortised": means["elbo_amortised"],
        "elbo_optimal": means["elbo_optimal"],
        "approximation_gap": means["loglik"] - means["elbo_optimal"],
        "amortisation_gap": means["elbo_optimal"] - means["elbo_amortised"],
        "num_images": int(images.shape[0]),
        "samples": budget.samples,
        "fit_steps_max": int(max(v.max().item() for v in parts["steps"])),
    }


GAP_KEYS = ("loglik_nats", "elbo_amortised", "elbo_optimal", "approximation_gap", "amortisation_gap",
            "num_images", "samples")


DEFAULT_GAP_IMAGES = 500


def evaluate_gap_run(run, budget: GapBudget = GapBudget(), num_images: int | None = None, batch_size: int = 100,
                     seed: int = 0, device: str = "auto", data_dir: str | None = None,
                     record: bool = True) -> dict:
    """``nacvae eval gap``: the gaps of a VAE run folder or checkpoint on the first
    ``num_images`` test images (None: 500, or all if there are fewer), observed as in training. With a run folder and
    ``record``, ``{"event": "eval_gap", ...}`` is appended to its metrics; when that cannot be
    written, ``not_recorded`` holds the sentence that says so."""
    budget.validate()
    check_int("batch-size", batch_size)
    check_seed(seed)
    dev = resolve_device(device)
    vae, meta, x = load_vae_with_test_images(run, dev, num_images, data_dir)
    x = x[:num_images if num_images is not None else DEFAULT_GAP_IMAGES]
    started = time.perf_counter()
    result = vae_gaps(vae, x.to(dev), budget, batch_size=batch_size, seed=seed)
    result.update({"init": meta.get("init"), "freeze_encoder": bool(meta.get("freeze_encoder", False)),
                   "step": meta["step"], "run": meta["run"], "checkpoint": meta["checkpoint"], "seed": int(seed),
                   "budget": dataclasses.asdict(budget),
                   "seconds": time.perf_counter() - started})
    if record and meta["run"] is not None:
        note = record_result(meta["run"], "eval_gap", result)
        if note is not None:
            result["not_recorded"] = note
    return result
