"""SSDH (Yang et al., IJCAI 2018): pseudo-similarities from a fixed network's features.

The cosine distances d_ij of the teacher's features are modelled by two half Gaussians that
share the distribution's mode m: sigma_l from the distances below m, sigma_r from those
above. Pairs with d_ij <= m - alpha sigma_l are similar (S = +1), pairs with
d_ij >= m + beta sigma_r dissimilar (S = -1), the rest S = 0 (no label). The hash layer's
relaxed codes h = tanh(a) in [-1, 1]^K are trained so that h_i . h_j / K matches S_ij on the
labelled pairs; unlabelled pairs carry no loss. docs/method.md, "Baselines".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def cosine_distances(features: torch.Tensor, others: torch.Tensor | None = None) -> torch.Tensor:
    """1 - cos(x_i, y_j) for rows of ``features`` against rows of ``others`` (default: itself)."""
    x = F.normalize(features, dim=1)
    y = x if others is None else F.normalize(others, dim=1)
    return 1.0 - x @ y.T


def pair_distances(features: torch.Tensor, max_images: int | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """The distances of every unordered pair i < j (of a uniform subset of ``max_images``
    rows when there are more), as a 1-D tensor."""
    if max_images is not None and features.shape[0] > max_images:
        rows = torch.randperm(features.shape[0], generator=generator)[:max_images]
        features = features[rows.to(features.device)]
    d = cosine_distances(features)
    i, j = torch.triu_indices(d.shape[0], d.shape[1], offset=1, device=d.device)
    return d[i, j]


@dataclass(frozen=True)
class HalfGaussians:
    mode: float
    sigma_left: float
    sigma_right: float

    def thresholds(self, alpha: float, beta: float) -> tuple[float, float]:
        """(d_similar, d_dissimilar) = (m - alpha sigma_l, m + beta sigma_r)."""
        return self.mode - alpha * self.sigma_left, self.mode + beta * self.sigma_right


def fit_half_gaussians(distances: torch.Tensor, bins: int = 100,
                       value_range: tuple[float, float] | None = None) -> HalfGaussians:
    """The mode (centre of the fullest of ``bins`` equal bins over ``value_range``, by default
    [min, max]; the first such bin on ties; distances outside the range are not counted) and
    the root-mean-square deviations from it of the distances on each side."""
    d = distances.double().flatten()
    lo, hi = (float(d.min()), float(d.max())) if value_range is None else map(float, value_range)
    width = (hi - lo) / bins
    if width <= 0:
        return HalfGaussians(lo, 0.0, 0.0)
    counts = torch.histc(d, bins=bins, min=lo, max=hi)
    mode = lo + (int(torch.argmax(counts)) + 0.5) * width
    left, right = d[d <= mode], d[d > mode]
    rms = lambda t: float(((t - mode) ** 2).mean().sqrt()) if t.numel() else 0.0  # noqa: E731
    return HalfGaussians(mode, rms(left), rms(right))


def pseudo_similarity(distances: torch.Tensor, d_similar: float, d_dissimilar: float) -> torch.Tensor:
    """S in {-1, 0, +1}: +1 where d <= d_similar, -1 where d >= d_dissimilar, else 0."""
    s = torch.zeros_like(distances)
    s = torch.where(distances >= d_dissimilar, -1.0, s)
    return torch.where(distances <= d_similar, 1.0, s)


def ssdh_loss(h: torch.Tensor, similarity: torch.Tensor, diagonal: bool = False) -> torch.Tensor:
    """Sum over ordered pairs i != j of |S_ij| (h_i . h_j / K - S_ij)^2, divided by the number
    of such pairs; h: relaxed codes [N, K]. Pairs with S_ij = 0 (neither clearly similar nor
    clearly dissimilar) contribute nothing. With ``diagonal`` the sum runs over the whole
    N x N batch, each image paired with itself included, divided by N^2 (SSDH's recipe)."""
    n, k = h.shape
    residual = (h @ h.T) / k - similarity
    weighted = similarity.abs() * residual.pow(2)
    if diagonal:
        return weighted.sum() / (n * n)
    off = ~torch.eye(n, dtype=torch.bool, device=h.device)
    return weighted[off].mean()
