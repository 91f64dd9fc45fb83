"""DeepBit (Lin et al., CVPR 2016): K sigmoid bits trained without labels, as pure functions.

With bit probabilities p = sigmoid(a) and the binary code b = 1[p > 0.5], the loss is
  alpha * mean_n ||b_n - p_n||^2                       (quantisation)
+ beta  * sum_k (mean_n p_nk - 1/2)^2                  (each bit on for half the batch)
+ gamma * sum_theta C(theta) mean_n ||p_n(theta) - p_n||^2   (rotation invariance)
where p_n(theta) is the probability vector of image n rotated by theta degrees. b carries
no gradient; the balance term uses the relaxed p so that it has one. docs/method.md, "Baselines".
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F


def deepbit_loss(p: torch.Tensor, p_rotated: Sequence[torch.Tensor], rotation_weights: Sequence[float],
                 alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0) -> torch.Tensor:
    """p: bit probabilities [N, K] of the images; p_rotated[r]: those of the images rotated by
    the r-th angle [N, K]; rotation_weights[r]: its weight C(theta_r)."""
    b = (p > 0.5).to(p.dtype).detach()
    quantisation = (b - p).pow(2).sum(dim=1).mean()
    balance = (p.mean(dim=0) - 0.5).pow(2).sum()
    rotation = sum(c * (pr - p).pow(2).sum(dim=1).mean() for c, pr in zip(rotation_weights, p_rotated))
    return alpha * quantisation + beta * balance + gamma * rotation


def rotate_images(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate a batch [N, C, H, W] by ``degrees`` (counter-clockwise) about the centre,
    bilinear, zeros outside (images are normalised, so zero is the mean intensity)."""
    t = math.radians(degrees)
    cos, sin = math.cos(t), math.sin(t)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
