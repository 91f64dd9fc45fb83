"""Image grids for TensorBoard: one picture of many small images, with a border between them.

TensorBoard's own tiling of a batch (``add_images``) puts images edge to edge, and small
grayscale images then merge into one blur; a grid with a grey border keeps them apart.
"""

from __future__ import annotations

import torch

PAD = 2           # pixels between images
PAD_VALUE = 0.5   # mid-grey: visible beside black backgrounds and white strokes alike


def image_grid(images: torch.Tensor, per_row: int = 8) -> torch.Tensor:
    """[N, C, H, W] floats in [0, 1] -> one [C', H', W'] grid with ``per_row`` images a row
    and a ``PAD``-pixel grey border around every image."""
    from torchvision.utils import make_grid

    return make_grid(images.detach().float().cpu().clamp(0, 1), nrow=per_row, padding=PAD, pad_value=PAD_VALUE)


def view_pairs(x1: torch.Tensor, x2: torch.Tensor, mean, std, count: int = 8) -> torch.Tensor:
    """The first ``count`` images' two augmented views, un-normalised to [0, 1]: a grid with
    the first views in one row above the second views."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    first, second = (x[:count].detach().float().cpu() * s + m for x in (x1, x2))
    return image_grid(torch.cat((first, second)), per_row=len(first))
