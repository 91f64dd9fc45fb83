"""Pixel likelihoods for the VAE decoder.

``DiscretizedLogistic`` is a normalised distribution over the integer levels of an
8-bit image; ``binarize`` turns 8-bit images into {0, 1} data for a Bernoulli decoder
(``pyro.distributions.Bernoulli(logits=...)``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

from nacvae.errors import ConfigError

__all__ = ["DiscretizedLogistic", "binarize"]


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(-d)) for d > 0, accurate for both small and large d."""
    cut = math.log(2.0)
    # each branch sees only inputs in its own range, so neither produces inf/NaN gradients
    small = torch.log(-torch.expm1(-d.clamp(max=cut)))
    large = torch.log1p(-torch.exp(-d.clamp(min=cut)))
    return torch.where(d < cut, small, large)


class DiscretizedLogistic(TorchDistribution):
    """Logistic distribution binned onto ``num_levels`` integer levels.

    Level k in {0, ..., L-1} stands for the interval of half-width h = 1/(L-1) around
    x_k = 2k/(L-1) - 1 in [-1, 1] coordinates; the first and last level also take the
    tails beyond -1 + h and 1 - h, so the probabilities sum to one for any ``loc``
    (which may lie outside [-1, 1]) and ``log_scale``.

    With a = (x_k + h - loc)/s and b = (x_k - h - loc)/s, an inner bin has mass
    sigma(a) - sigma(b) = sigma(a) * sigma(-b) * (1 - exp(-(a - b))), an exact identity
    whose three factors are each computed without cancellation (log-sigmoid and
    log(1 - exp(-d))). So tiny bin masses far in a tail or under a very small scale
    keep full relative precision and no density-at-the-centre fallback is needed.

    ``log_prob`` takes levels as a float or integer tensor. ``sample`` returns levels
    as floats of ``loc``'s dtype. Batch shape is the broadcast shape of ``loc`` and
    ``log_scale``; callers make pixels an event with ``.to_event(3)``.
    """

    arg_constraints = {"loc": constraints.real, "log_scale": constraints.real}
    has_rsample = False

    def __init__(self, loc, log_scale, num_levels: int = 256, validate_args=None):
        if int(num_levels) != num_levels or num_levels < 2:
            raise ConfigError(f"num_levels must be an integer of at least 2, got {num_levels!r}.")
        self.loc, self.log_scale = broadcast_all(loc, log_scale)
        self.num_levels = int(num_levels)
        super().__init__(self.loc.shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.integer_interval(0, self.num_levels - 1)

    @property
    def half_width(self) -> float:
        return 1.0 / (self.num_levels - 1)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiscretizedLogistic, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.log_scale = self.log_scale.expand(batch_shape)
        new.num_levels = self.num_levels
        super(DiscretizedLogistic, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        k = value.to(self.loc.dtype)
        h = self.half_width
        inv_s = torch.exp(-self.log_scale)
        # Edges as (2k +- 1) * h - 1: bin k's upper edge is bit-identical to bin k+1's
        # lower edge, so the masses telescope to one in finite precision too.
        a = ((2.0 * k + 1.0) * h - 1.0 - self.loc) * inv_s
        b = ((2.0 * k - 1.0) * h - 1.0 - self.loc) * inv_s
        not_top = k < self.num_levels - 1
        not_bottom = k > 0
        zero = torch.zeros((), dtype=a.dtype, device=a.device)
        # log sigma(a) = -softplus(-a), log sigma(-b) = -softplus(b)
        upper = torch.where(not_top, -F.softplus(-a), zero)
        lower = torch.where(not_bottom, -F.softplus(b), zero)
        width = torch.where(not_top & not_bottom, _log1mexp((a - b).clamp(min=torch.finfo(a.dtype).tiny)), zero)
        return upper + lower + width

    def sample(self, sample_shape=torch.Size(), generator: torch.Generator | None = None):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            tiny = torch.finfo(self.loc.dtype).tiny
            u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device, generator=generator)
            u = u.clamp(tiny, 1.0 - torch.finfo(self.loc.dtype).eps)
            x = self.loc.expand(shape) + torch.exp(self.log_scale.expand(shape)) * (
                torch.log(u) - torch.log1p(-u)
            )
            levels = torch.round((x + 1.0) * (0.5 * (self.num_levels - 1)))
            return levels.clamp(0, self.num_levels - 1)

    @property
    def mean(self):
        """Approximate mean in level units: ``loc`` clamped to [-1, 1] and mapped to levels.

        Exact only for scales small against the bin width; meant for pictures.
        """
        return (self.loc.clamp(-1.0, 1.0) + 1.0) * (0.5 * (self.num_levels - 1))


def binarize(
    images_uint8: torch.Tensor,
    generator: torch.Generator | None = None,
    stochastic: bool = False,
    threshold: int = 128,
) -> torch.Tensor:
    """Turn 8-bit images into float {0, 1} data for a Bernoulli likelihood.

    Deterministic: 1 where level >= ``threshold``. Stochastic: 1 with probability
    level / 255, drawn from ``generator`` (a fresh draw each call, as in dynamic
    binarisation).
    """
    if not isinstance(images_uint8, torch.Tensor) or images_uint8.dtype != torch.uint8:
        got = images_uint8.dtype if isinstance(images_uint8, torch.Tensor) else type(images_uint8).__name__
        raise ConfigError(f"binarize expects a uint8 image tensor, got {got}.")
    if stochastic:
        p = images_uint8.to(torch.float32) / 255.0
        u = torch.rand(p.shape, generator=generator, device=p.device)
        return (u < p).to(torch.float32)
    return (images_uint8 >= threshold).to(torch.float32)
