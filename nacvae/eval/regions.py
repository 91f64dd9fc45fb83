"""Linear regions of small ReLU encoders on 2-D inputs (the paper's expressivity picture).

A ReLU network is affine on each set of inputs sharing one activation pattern (the signs of
all its ReLU pre-activations). Counting the distinct patterns over a dense grid counts the
linear regions that the grid meets.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nacvae.models.heads import PretrainEncoder
from nacvae.objectives import nac_loss


class ToyEncoder(PretrainEncoder):
    """An MLP backbone 2 -> width -> width (ReLU) with NAC's projection and prediction heads."""

    def __init__(self, width: int = 32, depth: int = 2, code_dim: int = 16) -> None:
        layers: list[nn.Module] = []
        dims = [2] + [width] * depth
        for i in range(depth):
            layers += [nn.Linear(dims[i], dims[i + 1]), nn.ReLU()]
        super().__init__(nn.Sequential(*layers), width, code_dim)


def activation_patterns(encoder: PretrainEncoder, x: torch.Tensor) -> torch.Tensor:
    """Bool [N, units]: the sign of every ReLU pre-activation of the backbone and the
    projection head, and of the code pre-activations a (the code layer)."""
    signs: list[torch.Tensor] = []

    def record(_module, inputs, _output):
        signs.append(inputs[0] > 0)

    relus = [m for m in list(encoder.backbone.modules()) + list(encoder.projector.modules()) if isinstance(m, nn.ReLU)]
    handles = [m.register_forward_hook(record) for m in relus]
    try:
        with torch.no_grad():
            a = encoder.projector(encoder.backbone(x))
    finally:
        for h in handles:
            h.remove()
    return torch.cat(signs + [a > 0], dim=1)


def region_ids(patterns: torch.Tensor) -> tuple[torch.Tensor, int]:
    """An integer id per row (equal patterns, equal ids) and the number of distinct patterns."""
    _, ids = torch.unique(patterns, dim=0, return_inverse=True)
    return ids, int(ids.max()) + 1


def grid(lo: float, hi: float, resolution: int) -> torch.Tensor:
    axis = torch.linspace(lo, hi, resolution)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], dim=1)


def two_rings(n: int, generator: torch.Generator, noise: float = 0.05) -> torch.Tensor:
    """Points on two concentric circles (radii 0.5 and 1) with Gaussian noise."""
    angle = 2 * math.pi * torch.rand(n, generator=generator)
    radius = torch.where(torch.rand(n, generator=generator) < 0.5, 0.5, 1.0)
    points = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    return points + noise * torch.randn(n, 2, generator=generator)


def train_toy_nac(encoder: ToyEncoder, data: torch.Tensor, steps: int = 1500, batch_size: int = 256,
                  flip_prob: float = 0.1, view_noise: float = 0.05, lr: float = 3e-3, seed: int = 0) -> list[float]:
    """NAC on 2-D points; the two views are the point plus independent Gaussian jitter."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(encoder.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        x = data[torch.randint(len(data), (batch_size,), generator=g)]
        x1 = x + view_noise * torch.randn(x.shape, generator=g)
        x2 = x + view_noise * torch.randn(x.shape, generator=g)
        _, a, l = encoder(torch.cat([x1, x2]))
        loss = nac_loss(a[:batch_size], a[batch_size:], l[:batch_size], l[batch_size:], flip_prob, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
