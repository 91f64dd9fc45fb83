"""Batched two-view augmentation that runs on the images' device.

Every step is a tensor operation over the whole batch (no per-image Python loop, no
PIL) and all randomness comes from one ``torch.Generator``, so the same seed gives the
same views. The pipeline follows the paper's (SimCLR-style) recipe:
RandomResizedCrop -> horizontal flip -> colour jitter (random order per image) ->
random grayscale -> normalisation. Crop, resize and flip are one ``grid_sample``.
Unlike a PIL pipeline, intermediate images stay in float and are not rounded to uint8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from nacvae.errors import ConfigError

__all__ = [
    "AugmentConfig",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "augment",
    "crop_flip_resize",
    "default_augment",
    "hsv_to_rgb",
    "normalize",
    "rgb_to_grayscale",
    "rgb_to_hsv",
    "sample_crops",
    "two_views",
]

# ITU-R 601-2 luma weights, as used by PIL and torchvision.
LUMA_WEIGHTS = (0.2989, 0.587, 0.114)
CROP_TRIES = 10


@dataclass
class AugmentConfig:
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    gray_p: float = 0.2

    def __post_init__(self) -> None:
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        self.crop_scale = tuple(float(v) for v in self.crop_scale)
        self.crop_ratio = tuple(float(v) for v in self.crop_ratio)
        self.jitter = tuple(float(v) for v in self.jitter)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ConfigError(
                f"The augmentation size must be a positive integer, not {self.size!r}."
            )
        if len(self.mean) != len(self.std) or len(self.mean) not in (1, 3):
            raise ConfigError("The normalisation mean and std must both have 1 or 3 values.")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"The normalisation std must be positive, not {self.std}.")
        lo, hi = self.crop_scale
        if len(self.crop_scale) != 2 or not 0 < lo <= hi <= 1:
            raise ConfigError(
                f"The crop scale must satisfy 0 < min <= max <= 1, not {self.crop_scale}."
            )
        lo, hi = self.crop_ratio
        if len(self.crop_ratio) != 2 or not 0 < lo <= hi:
            raise ConfigError(
                f"The crop aspect ratio must satisfy 0 < min <= max, not {self.crop_ratio}."
            )
        if len(self.jitter) != 4 or any(v < 0 for v in self.jitter) or self.jitter[3] > 0.5:
            raise ConfigError(
                "Colour jitter takes four non-negative strengths (brightness, contrast, "
                f"saturation, hue) with hue at most 0.5, not {self.jitter}."
            )
        for name in ("flip_p", "jitter_p", "gray_p"):
            p = getattr(self, name)
            if not 0 <= p <= 1:
                raise ConfigError(f"The probability {name} must lie in [0, 1], not {p}.")


def default_augment(
    dataset: str,
    image_shape: tuple[int, int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> AugmentConfig:
    """The paper's settings, made milder for the small grayscale datasets."""
    size = int(image_shape[-1])
    name = dataset.lower()
    if name == "digits":
        # 8x8 digits: an 8% crop is a pixel or two and loses the digit, and a mirrored
        # digit is often another digit or none (2, 3, 7), so crop less and never flip.
        return AugmentConfig(size=size, mean=mean, std=std, crop_scale=(0.3, 1.0), flip_p=0.0)
    if name == "fashion-mnist":
        # 28x28 garments: tiny crops show only texture; garments are mirror-symmetric.
        return AugmentConfig(size=size, mean=mean, std=std, crop_scale=(0.2, 1.0))
    return AugmentConfig(size=size, mean=mean, std=std)


# ------------------------------------------------------------------- basic conversions


def _to_float(images: torch.Tensor) -> torch.Tensor:
    if images.dim() != 4:
        raise ValueError(f"expected images of shape [B, C, H, W], got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if images.is_floating_point():
        return images.float()
    raise ValueError(f"expected uint8 or floating images, got {images.dtype}")


def _normalise_(x: torch.Tensor, mean, std) -> torch.Tensor:
    if len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise ConfigError(
            f"The normalisation mean and std have {len(mean)} values but the images have "
            f"{x.shape[1]} channels."
        )
    m = _constant(tuple(mean), x.dtype, x.device).view(1, -1, 1, 1)
    s = _constant(tuple(std), x.dtype, x.device).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


@lru_cache(maxsize=64)
def _constant(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small constant kept on the device: building it anew each step from a Python list
    would be a host-to-device copy that waits for the GPU."""
    return torch.tensor(values, dtype=dtype, device=device)


def normalize(
    images: torch.Tensor, mean, std, size: int | None = None
) -> torch.Tensor:
    """Eval-time transform: uint8 (or [0, 1] float) -> normalised float32, optional resize."""
    x = _to_float(images)
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        ).clamp_(0, 1)
    elif x.data_ptr() == images.data_ptr():
        x = x.clone()
    return _normalise_(x, mean, std)


def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] -> [B, 1, H, W] luma; 1-channel input is returned as is."""
    if x.shape[-3] == 1:
        return x
    r, g, b = x.unbind(-3)
    wr, wg, wb = LUMA_WEIGHTS
    return (wr * r + wg * g + wb * b).unsqueeze(-3)


def _hue_parts(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hue in sixths of a turn, in [-1, 6), max channel, max - min) of RGB [B, 3, H, W]."""
    maxc, argmax = x.max(dim=1, keepdim=True)
    delta = maxc - x.amin(dim=1, keepdim=True)
    # With channel c the largest, hue = (x[c+1] - x[c+2]) / delta + 2c sixths (mod 6): the
    # numerators g - b, b - r, r - g, formed directly (rolling the channels copies the batch twice).
    r, g, b = x.split(1, dim=1)
    diffs = torch.cat((g - b, b - r, r - g), dim=1)
    # Grey pixels (delta 0) have a zero numerator; their hue does not affect the RGB.
    h6 = diffs.gather(1, argmax) / delta.clamp_min(1e-12) + 2 * argmax
    return h6, maxc, delta


def _from_hue(h6: torch.Tensor, v: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """RGB from hue (sixths), value and chroma = v * s, branch-free.

    Channel n in (R, G, B) = (5, 3, 1) is v - chroma * clamp(min(k, 4 - k), 0, 1) with
    k = (n + hue) mod 6.
    """
    n = _constant((5.0, 3.0, 1.0), h6.dtype, h6.device).view(1, 3, 1, 1)
    k = torch.remainder(h6 + n, 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return v - chroma * ramp


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """RGB [B, 3, H, W] in [0, 1] -> HSV with all three components in [0, 1]."""
    h6, maxc, delta = _hue_parts(x)
    h = torch.where(delta > 0, torch.remainder(h6 / 6.0, 1.0), 0.0)
    s = delta / maxc.clamp_min(1e-12)
    return torch.cat((h, s, maxc), dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`."""
    h, s, v = x.split(1, dim=1)
    return _from_hue(6.0 * h, v, v * s)


# ------------------------------------------------------------- colour ops (per image)


def _per_image(factor: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    f = torch.as_tensor(factor, dtype=x.dtype, device=x.device)
    return f.reshape(-1, 1, 1, 1) if f.dim() else f


def adjust_brightness(x: torch.Tensor, factor) -> torch.Tensor:
    """Scale intensities by ``factor`` (a number or one value per image)."""
    return (x * _per_image(factor, x)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, factor) -> torch.Tensor:
    """Blend each image with the mean of its grayscale version."""
    f = _per_image(factor, x)
    mean = rgb_to_grayscale(x).mean(dim=(-3, -2, -1), keepdim=True)
    return (f * x + (1 - f) * mean).clamp_(0, 1)


def adjust_saturation(x: torch.Tensor, factor) -> torch.Tensor:
    """Blend each image with its grayscale version; a no-op for 1-channel images."""
    if x.shape[-3] == 1:
        return x
    f = _per_image(factor, x)
    return (f * x + (1 - f) * rgb_to_grayscale(x)).clamp_(0, 1)


def adjust_hue(x: torch.Tensor, factor) -> torch.Tensor:
    """Rotate hue by ``factor`` turns (|factor| <= 0.5); a no-op for 1 channel.

    Same result as RGB -> HSV, shift, HSV -> RGB, without forming S (v * s = max - min).
    """
    if x.shape[-3] == 1:
        return x
    h6, maxc, delta = _hue_parts(x)
    return _from_hue(h6 + 6.0 * _per_image(factor, x), maxc, delta).clamp_(0, 1)


# ------------------------------------------------------------------- crop and resize


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device, shape=()) -> torch.Tensor:
    return torch.rand((n, *shape), generator=g, device=device) * (hi - lo) + lo


def sample_crops(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
    device=None,
) -> torch.Tensor:
    """RandomResizedCrop boxes as a [batch, 4] float tensor of (top, left, h, w).

    Like torchvision: area fraction uniform in ``scale``, aspect ratio log-uniform in
    ``ratio``, up to 10 tries, else the central crop with the ratio clamped. The tries
    are drawn for all images at once and the first valid one is kept.
    """
    device = device if device is not None else generator.device
    area = float(height * width)
    target = area * _uniform(batch, scale[0], scale[1], generator, device, (CROP_TRIES,))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(_uniform(batch, log_lo, log_hi, generator, device, (CROP_TRIES,)))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    u_top = torch.rand((batch, CROP_TRIES), generator=generator, device=device)
    u_left = torch.rand((batch, CROP_TRIES), generator=generator, device=device)
    top = torch.floor(u_top * (height - h + 1))
    left = torch.floor(u_left * (width - w + 1))

    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    # Index of the first valid try; argmax returns the first maximum.
    first = valid.to(torch.uint8).argmax(dim=1, keepdim=True)
    any_valid = valid.any(dim=1)
    pick = lambda t: t.gather(1, first).squeeze(1)  # noqa: E731
    top, left, h, w = pick(top), pick(left), pick(h), pick(w)

    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fh, fw = height, int(round(height * ratio[1]))
    else:
        fw, fh = width, height
    fallback = _constant(((height - fh) // 2, (width - fw) // 2, fh, fw), top.dtype, device)
    boxes = torch.stack((top, left, h, w), dim=1)
    return torch.where(any_valid.unsqueeze(1), boxes, fallback)


@lru_cache(maxsize=64)
def _grid_base(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The pixel centres of a ``size``-pixel side in [-1, 1], as F.affine_grid places them
    (align_corners=False)."""
    return torch.linspace(-1, 1, size, dtype=dtype, device=device) * (size - 1) / size


def crop_flip_resize(
    x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, size: int
) -> torch.Tensor:
    """Crop each image to its (top, left, h, w) box, optionally mirror, resize to size.

    One affine grid for the batch and one bilinear ``grid_sample``; the same result as
    cropping and then ``interpolate(..., align_corners=False)`` without antialiasing.
    """
    b, c, height, width = x.shape
    top, left, h, w = boxes.to(x.dtype).unbind(1)
    sx = w / width
    sy = h / height
    # Output x in [-1, 1] maps to input x = sx * x_out + tx (normalised coordinates).
    tx = (2 * left + w) / width - 1
    ty = (2 * top + h) / height - 1
    sx = torch.where(flip.to(torch.bool), -sx, sx)
    # The grid of F.affine_grid for this diagonal theta, formed separably: output column j
    # samples x = sx * base[j] + tx and row i samples y = sy * base[i] + ty (base: the
    # pixel centres in [-1, 1]), the same values without a [B, size * size, 3] x [3, 2] bmm.
    base = _grid_base(size, x.dtype, x.device)
    gx = sx.view(-1, 1, 1) * base.view(1, 1, -1) + tx.view(-1, 1, 1)  # [B, 1, size]
    gy = sy.view(-1, 1, 1) * base.view(1, -1, 1) + ty.view(-1, 1, 1)  # [B, size, 1]

    # Keep samples between the centres of the crop's edge pixels, so that the crop's own
    # border is replicated (as resizing the cut-out crop does) instead of blending in
    # pixels from outside it.
    def centres(start, length, full):
        first = (2 * start + 1) / full - 1
        last = (2 * (start + length) - 1) / full - 1
        return first.view(-1, 1, 1), last.view(-1, 1, 1)

    gx = gx.clamp(*centres(left, w, width)).expand(b, size, size)
    gy = gy.clamp(*centres(top, h, height)).expand(b, size, size)
    grid = torch.stack((gx, gy), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# ------------------------------------------------------------------------- pipeline


def _apply_to(
    x: torch.Tensor, sel: torch.Tensor, op, factor: torch.Tensor, subset: bool | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """``op`` on the images where ``sel`` is true, the others unchanged.

    ``subset`` (default: on CPU) computes ``op`` on the selected images only; otherwise it
    is computed for the whole batch and selected, which gives the same result. ``inplace``
    (subset only) writes the selected images into ``x`` instead of a copy of it.
    """
    if subset is None:
        subset = x.device.type == "cpu"
    if subset:
        # On CPU, work on the selected images only (indexing costs no device sync here).
        idx = sel.nonzero().squeeze(1)
        if idx.numel() == 0:
            return x
        out = x if inplace else x.clone()
        out[idx] = op(x[idx], factor[idx])
        return out
    # On an accelerator, compute for all and select: no host sync, same result.
    return torch.where(sel.view(-1, 1, 1, 1), op(x, factor), x)


def _colour_jitter(
    x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator, owned: bool = False
) -> torch.Tensor:
    """The jittered batch; ``owned``: ``x`` is the caller's scratch and may be overwritten."""
    b = x.shape[0]
    device = x.device
    bri, con, sat, hue = cfg.jitter
    apply = torch.rand(b, generator=g, device=device) < cfg.jitter_p
    factors = [
        _uniform(b, max(0.0, 1 - bri), 1 + bri, g, device),
        _uniform(b, max(0.0, 1 - con), 1 + con, g, device),
        _uniform(b, max(0.0, 1 - sat), 1 + sat, g, device),
        _uniform(b, -hue, hue, g, device),
    ]
    # A random permutation of the four ops per image: argsort of uniform noise.
    order = torch.rand((b, 4), generator=g, device=device).argsort(dim=1)
    ops = [adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue]
    strength = [bri, con, sat, hue]
    if x.shape[1] == 1:
        strength[2] = strength[3] = 0.0  # saturation and hue do nothing to gray images
    # On a CPU each op writes its images into one working copy (each image gets one op per
    # stage); a copy of the batch per op was a third of the augmentation's time.
    inplace = x.device.type == "cpu"
    if inplace and not owned:
        x = x.clone()
    for stage in range(4):
        for op_index, op in enumerate(ops):
            if strength[op_index] > 0:
                sel = apply & (order[:, stage] == op_index)
                x = _apply_to(x, sel, op, factors[op_index], inplace=inplace)
    return x


def augment(
    images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """One random view of each image: uint8 [B, C, H, W] -> float32 [B, C, size, size].

    ``generator`` must live on the images' device; the result is a deterministic
    function of the images and the generator's state.
    """
    if generator.device.type != images.device.type:
        raise ValueError(
            f"the generator is on {generator.device} but the images are on {images.device}"
        )
    x = _to_float(images)
    b, c, height, width = x.shape
    device = x.device

    boxes = sample_crops(b, height, width, cfg.crop_scale, cfg.crop_ratio, generator, device)
    flip = torch.rand(b, generator=generator, device=device) < cfg.flip_p
    x = crop_flip_resize(x, boxes, flip, cfg.size).clamp_(0, 1)

    x = _colour_jitter(x, cfg, generator, owned=True)

    gray = torch.rand(b, generator=generator, device=device) < cfg.gray_p
    if c == 3:
        if device.type == "cpu":  # the selected images only, in place (x is this function's own)
            idx = gray.nonzero().squeeze(1)
            if idx.numel():
                x[idx] = rgb_to_grayscale(x[idx]).expand(-1, 3, -1, -1)
        else:
            x = torch.where(gray.view(-1, 1, 1, 1), rgb_to_grayscale(x).expand_as(x), x)

    return _normalise_(x.contiguous(), cfg.mean, cfg.std)


def two_views(
    images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent views of each image, computed in one pass over a doubled batch."""
    views = augment(torch.cat((images, images)), cfg, generator)
    return views[: len(images)], views[len(images):]
