"""DistillHash (Yang et al., CVPR 2019): learn only from the pairs whose label is confident.

Initial similarity labels come from a fixed network's feature distances; only the pairs at
the ends of the distance distribution are distilled (the closest ``similar_fraction`` of all
pairs labelled similar, s = 1, the farthest ``dissimilar_fraction`` dissimilar, s = 0), and the
relaxed codes h = tanh(a) are fitted to them by the pairwise Bayesian likelihood
p(s_ij | h_i, h_j) = sigmoid(Omega_ij)^s_ij (1 - sigmoid(Omega_ij))^(1 - s_ij) with
Omega_ij = h_i . h_j / 2. Pairs outside the distilled set contribute nothing. docs/method.md, "Baselines".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distill_thresholds(distances: torch.Tensor, similar_fraction: float,
                       dissimilar_fraction: float) -> tuple[float, float]:
    """(d_similar, d_dissimilar): the ``similar_fraction`` and 1 - ``dissimilar_fraction``
    quantiles (linear interpolation) of the pair distances."""
    d = distances.double().flatten()
    return float(torch.quantile(d, similar_fraction)), float(torch.quantile(d, 1.0 - dissimilar_fraction))


def distilled_pairs(distances: torch.Tensor, d_similar: float, d_dissimilar: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels s in {0, 1}, mask of the distilled pairs) for a matrix of distances."""
    similar = distances <= d_similar
    dissimilar = distances >= d_dissimilar
    return similar.to(distances.dtype), similar | dissimilar


def distillhash_loss(h: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over distilled ordered pairs i != j:
    log(1 + exp(Omega_ij)) - s_ij Omega_ij; zero when no pair is distilled."""
    n = h.shape[0]
    omega = 0.5 * (h @ h.T)
    keep = mask & ~torch.eye(n, dtype=torch.bool, device=h.device)
    nll = F.softplus(omega) - labels * omega
    count = keep.sum()
    return (nll * keep).sum() / count.clamp(min=1)
