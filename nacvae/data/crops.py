"""Crop geometry of the streamed datasets, torchvision's rules on PIL images: a training view's
RandomResizedCrop box, and evaluation's resize of the shorter side to 256/224 of the crop
followed by a centre crop."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["CROP_RATIO", "CROP_SCALE", "centre_box", "eval_short_side", "random_resized_box", "resize_centre_crop"]

# Evaluation resizes the shorter side to size * 256 / 224 before the centre crop.
EVAL_RESIZE_RATIO = 256 / 224
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
CROP_TRIES = 10


def random_resized_box(height: int, width: int, rng: np.random.Generator, scale=CROP_SCALE,
                       ratio=CROP_RATIO) -> tuple[int, int, int, int]:
    """A RandomResizedCrop box (top, left, h, w) of an image, torchvision's rule.

    Area fraction uniform in ``scale``, aspect ratio log-uniform in ``ratio``, up to ten
    tries for a box that fits; else the whole image with its aspect ratio clamped into
    ``ratio``, centred.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(CROP_TRIES):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def eval_short_side(size: int) -> int:
    return int(round(size * EVAL_RESIZE_RATIO))


def centre_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """The box (top, left, h, w) of the original image that ``resize_centre_crop`` keeps."""
    side = min(height, width) * size / eval_short_side(size)
    h = w = max(1, int(round(side)))
    return (height - h) // 2, (width - w) // 2, h, w


def _resized_shape(height: int, width: int, short: int) -> tuple[int, int]:
    """(h, w) after resizing the shorter side to ``short``, keeping the aspect ratio."""
    if height <= width:
        return short, max(short, int(short * width / height))
    return max(short, int(short * height / width)), short


def resize_centre_crop(image, size: int):
    """A PIL image resized (shorter side ``size * 256 / 224``) and centre-cropped to ``size``."""
    from PIL import Image

    h, w = _resized_shape(image.height, image.width, eval_short_side(size))
    image = image.resize((w, h), Image.Resampling.BILINEAR)
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return image.crop((left, top, left + size, top + size))
