"""A Pyro VAE whose encoder is a transferred backbone.

q(z|x) = N(mu(h), diag sigma(h)^2) with h = backbone(normalise(x)) and fresh linear
heads; sigma = softplus(.) + 1e-4. Prior N(0, I). The decoder is a transposed-conv
network sized to the image, with a discretized-logistic likelihood over the 256 levels
of 8-bit pixels, or a Bernoulli likelihood over binarised pixels.

Data passed to ``model`` / ``guide``: for ``likelihood="logistic"`` the uint8 levels as
a float tensor [B, C, H, W]; for ``"bernoulli"`` a {0, 1} float tensor. The guide feeds
the backbone (x * input_scale - mean) / std with input_scale = 1/255 for levels and 1
for binary data, i.e. a binary image is seen as the 0/255 image it stands for.

Parameters enter Pyro's global param store under "encoder" and "decoder" (only the
trainable ones). As usual with Pyro, call ``pyro.clear_param_store()`` before training
a new VAE in a process that already trained one; ``model`` / ``guide`` raise
``ConfigError`` if the store still holds another model's parameters under these names.
"""

from __future__ import annotations

import contextlib

import math
import warnings
from typing import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.params.param_store import param_with_module_name
from torch import nn

from nacvae.errors import ConfigError
from nacvae.models.likelihoods import DiscretizedLogistic

__all__ = ["ConvDecoder", "VAE", "analytic_kl", "active_units", "LIKELIHOODS"]

LIKELIHOODS = ("logistic", "bernoulli")
_SIGMA_FLOOR = 1e-4
_MIN_LOG_SCALE = -7.0  # logistic scale >= ~1e-3, a quarter of a bin's half-width


def _check_likelihood(likelihood: str) -> None:
    if likelihood not in LIKELIHOODS:
        raise ConfigError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {likelihood!r}.")


def _check_image_shape(image_shape) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in image_shape)
    except (TypeError, ValueError):
        raise ConfigError(f"image_shape must be (channels, height, width), got {image_shape!r}.") from None
    if min(c, h, w) < 1:
        raise ConfigError(f"image_shape must have positive sizes, got {image_shape!r}.")
    return c, h, w


def autocast_to(t: torch.Tensor, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on ``t``'s device, or no change at all (None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(t.device.type, dtype=dtype)


def _unhalved(t: torch.Tensor) -> torch.Tensor:
    """float32 for autocast's half-precision outputs; float32 and float64 as they are."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


class ConvDecoder(nn.Module):
    """z [..., L] -> likelihood parameters [..., C, H, W].

    A linear layer fills a small map of ceil(H/2^n) x ceil(W/2^n) (n = 2 for images up
    to 16 pixels, 3 above), n stride-2 transposed convolutions double it to at least
    H x W, the result is centre-cropped and a 3x3 convolution gives the outputs:
    per-pixel, per-channel ``(loc, log_scale)`` for "logistic" (log_scale clamped below
    at -7), ``logits`` for "bernoulli". Channels start at ``width`` and halve at each
    upsampling, never below 16.
    """

    def __init__(self, latent_dim: int, image_shape: Sequence[int], likelihood: str = "logistic", width: int = 64):
        super().__init__()
        _check_likelihood(likelihood)
        self.image_shape = _check_image_shape(image_shape)
        self.latent_dim = int(latent_dim)
        self.likelihood = likelihood
        c, h, w = self.image_shape
        self.num_up = 2 if max(h, w) <= 16 else 3
        self.start_hw = (math.ceil(h / 2**self.num_up), math.ceil(w / 2**self.num_up))
        chans = [max(width // 2**i, 16) for i in range(self.num_up + 1)]
        self.fc = nn.Linear(self.latent_dim, chans[0] * self.start_hw[0] * self.start_hw[1])
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(chans[i], chans[i + 1], kernel_size=4, stride=2, padding=1) for i in range(self.num_up)
        )
        self.out_channels = 2 * c if likelihood == "logistic" else c
        self.out = nn.Conv2d(chans[-1], self.out_channels, kernel_size=3, padding=1)
        self._start_channels = chans[0]

    amp_dtype: torch.dtype | None = None  # autocast for the hidden layers (VAE.set_precision)

    def forward(self, z: torch.Tensor):
        lead = z.shape[:-1]
        c, h, w = self.image_shape
        with autocast_to(z, self.amp_dtype):
            y = F.relu(self.fc(z.reshape(-1, self.latent_dim)))
            y = y.view(-1, self._start_channels, *self.start_hw)
            for up in self.ups:
                y = F.relu(up(y))
        top = (y.shape[-2] - h) // 2
        left = (y.shape[-1] - w) // 2
        # The output layer stays float32: bf16's 8-bit mantissa would put a pixel's logistic
        # location on a grid as coarse as the 1/255 bins it is scored on.
        y = self.out(_unhalved(y[..., top : top + h, left : left + w]))
        y = y.reshape(*lead, self.out_channels, h, w)
        if self.likelihood == "logistic":
            loc, log_scale = y[..., :c, :, :], y[..., c:, :, :]
            return loc, log_scale.clamp(min=_MIN_LOG_SCALE)
        return y


class GaussianEncoder(nn.Module):
    """Backbone features -> (mu, sigma) of a diagonal Gaussian; sigma = softplus + 1e-4."""

    def __init__(self, backbone: nn.Module, feature_dim: int, latent_dim: int):
        super().__init__()
        self.backbone = backbone
        self.loc = nn.Linear(feature_dim, latent_dim)
        self.scale = nn.Linear(feature_dim, latent_dim)
        self.frozen = False

    def freeze_backbone(self) -> None:
        self.frozen = True
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    amp_dtype: torch.dtype | None = None  # autocast for the backbone (VAE.set_precision)

    def forward(self, x_normalised: torch.Tensor):
        with torch.no_grad() if self.frozen else contextlib.nullcontext(), autocast_to(x_normalised, self.amp_dtype):
            h = self.backbone(x_normalised)
        h = _unhalved(h)  # the Gaussian heads in float32
        return self.loc(h), F.softplus(self.scale(h)) + _SIGMA_FLOOR


class VAE(nn.Module):
    """Pyro VAE with a transferred backbone as encoder; see the module docstring."""

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        image_shape: Sequence[int],
        latent_dim: int = 32,
        likelihood: str = "logistic",
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.5,),
        freeze_encoder: bool = False,
        decoder_width: int = 64,
    ):
        super().__init__()
        _check_likelihood(likelihood)
        self.image_shape = _check_image_shape(image_shape)
        if int(latent_dim) < 1 or int(feature_dim) < 1:
            raise ConfigError(
                f"latent_dim and feature_dim must be positive, got {latent_dim!r} and {feature_dim!r}."
            )
        c = self.image_shape[0]
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        for label, t in (("mean", mean_t), ("std", std_t)):
            if t.numel() not in (1, c):
                raise ConfigError(f"{label} must have 1 or {c} values (one per channel), got {t.numel()}.")
        if (std_t <= 0).any():
            raise ConfigError("std values must be positive.")
        self.register_buffer("norm_mean", mean_t.expand(c).clone().view(c, 1, 1))
        self.register_buffer("norm_std", std_t.expand(c).clone().view(c, 1, 1))
        self.likelihood = likelihood
        self.latent_dim = int(latent_dim)
        self.input_scale = 1.0 / 255.0 if likelihood == "logistic" else 1.0
        self.encoder = GaussianEncoder(backbone, int(feature_dim), self.latent_dim)
        self.decoder = ConvDecoder(self.latent_dim, self.image_shape, likelihood, width=decoder_width)
        self.freeze_encoder = bool(freeze_encoder)
        if self.freeze_encoder:
            self.encoder.freeze_backbone()

    @property
    def backbone(self) -> nn.Module:
        return self.encoder.backbone

    def set_precision(self, dtype: torch.dtype | None) -> "VAE":
        """Run the backbone and the decoder's hidden layers under autocast to ``dtype`` (bf16),
        or in the parameters' precision (None, the default). The Gaussian heads, the decoder's
        output layer and every log-density stay float32."""
        self.encoder.amp_dtype = dtype
        self.decoder.amp_dtype = dtype
        return self

    # plain torch -------------------------------------------------------------------

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.input_scale - self.norm_mean) / self.norm_std

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, sigma) of q(z|x), each [B, latent_dim]."""
        return self.encoder(self.normalise(x.to(self.norm_mean.dtype)))

    def likelihood_dist(self, z: torch.Tensor):
        """p(x|z) with batch shape z.shape[:-1] and event shape (C, H, W)."""
        params = self.decoder(z)
        if self.likelihood == "logistic":
            loc, log_scale = params
            return DiscretizedLogistic(loc, log_scale).to_event(3)
        return dist.Bernoulli(logits=params).to_event(3)

    def _picture(self, z: torch.Tensor, generator: torch.Generator | None, pixel_noise: bool) -> torch.Tensor:
        p = self.likelihood_dist(z).base_dist
        if self.likelihood == "logistic":
            levels = p.sample(generator=generator) if pixel_noise else p.mean
        elif pixel_noise:
            levels = 255.0 * torch.bernoulli(p.probs, generator=generator)
        else:
            levels = 255.0 * p.probs
        return levels.round().clamp(0, 255).to(torch.uint8)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, pixel_noise: bool = False, generator: torch.Generator | None = None):
        """uint8 [B, C, H, W] images decoded from the posterior means of x.

        Without ``pixel_noise`` a pixel shows the likelihood's mean (the probability
        times 255 for Bernoulli data); with it, a draw from the likelihood.
        """
        mu, _ = self.encode(x)
        return self._picture(mu, generator, pixel_noise)

    @torch.no_grad()
    def sample_images(self, n: int, generator: torch.Generator | None = None, pixel_noise: bool = False):
        """uint8 [n, C, H, W] images decoded from z ~ N(0, I) drawn with ``generator``."""
        if int(n) < 1:
            raise ConfigError(f"The number of images to sample must be positive, got {n!r}.")
        ref = self.norm_mean
        z = torch.randn(int(n), self.latent_dim, generator=generator, device=ref.device, dtype=ref.dtype)
        return self._picture(z, generator, pixel_noise)

    # Pyro --------------------------------------------------------------------------

    def _register(self, name: str, module: nn.Module) -> None:
        with warnings.catch_warnings():
            # a frozen backbone's parameters are meant to stay out of the param store
            warnings.filterwarnings("ignore", message=".*requires_grad=False.*")
            pyro.module(name, module)
        store = pyro.get_param_store()
        for pname, p in module.named_parameters():
            if p.requires_grad and store[param_with_module_name(name, pname)] is not p:
                # pyro.module keeps an older entry of the same name, which SVI would then
                # optimise instead of this module's parameter.
                raise ConfigError(
                    f"Pyro's param store holds another model's parameter '{name}.{pname}'; "
                    "call pyro.clear_param_store() before using this VAE."
                )

    def model(self, x: torch.Tensor) -> None:
        self._register("decoder", self.decoder)
        batch = x.shape[0]
        with pyro.plate("data", batch, dim=-1):
            z_loc = x.new_zeros(batch, self.latent_dim)
            z_scale = x.new_ones(batch, self.latent_dim)
            z = pyro.sample("z", dist.Normal(z_loc, z_scale).to_event(1))
            pyro.sample("x", self.likelihood_dist(z), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        self._register("encoder", self.encoder)
        mu, sigma = self.encode(x)
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(mu, sigma).to_event(1))


def analytic_kl(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag sigma^2) || N(0, I)) summed over the last dimension."""
    return 0.5 * (mu.pow(2) + sigma.pow(2) - 1.0 - 2.0 * torch.log(sigma)).sum(-1)


def active_units(mu_all: torch.Tensor, threshold: float = 0.01) -> int:
    """Number of latent dimensions d with Var_x(E_q[z_d | x]) > threshold (Burda et al.).

    ``mu_all`` holds the posterior means of N examples, [N, L]; the variance is the
    population variance over the N rows (0 for a single row).
    """
    if mu_all.dim() != 2:
        raise ConfigError(f"active_units expects posterior means of shape [N, L], got {tuple(mu_all.shape)}.")
    if mu_all.shape[0] == 0:
        return 0
    var = mu_all.to(torch.float64).var(dim=0, correction=0)
    return int((var > threshold).sum().item())
