"""Instance discrimination with a memory bank (Wu et al., CVPR 2018), as pure functions.

Every training image i is its own class. Its L2-normalised embedding f is scored against
the memory bank V (one unit vector per training image) by P(i | f) = exp(v_i . f / tau) / Z.
The loss is either the exact non-parametric softmax over the whole bank or its noise-
contrastive estimate with m noise entries drawn uniformly (P_n = 1/n) and the normaliser Z
estimated once and then held fixed, as in the paper. The bank follows the embeddings by a
momentum update. docs/method.md, "Baselines", gives the settings followed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def insdis_softmax_loss(f: torch.Tensor, bank: torch.Tensor, index: torch.Tensor, temperature: float) -> torch.Tensor:
    """-mean_b log P(index_b | f_b) with the exact softmax over every bank entry.

    f: normalised embeddings [B, D]; bank: [n, D] (treated as constants); index: [B] rows of
    the bank that hold each embedding's own instance.
    """
    logits = f @ bank.detach().T / temperature
    return F.cross_entropy(logits, index)


def nce_normaliser(f: torch.Tensor, noise: torch.Tensor, temperature: float, num_data: int) -> torch.Tensor:
    """Monte Carlo estimate Z = n * mean_{b, j} exp(v_j . f_b / tau) over noise entries v_j [m, D]."""
    return num_data * torch.exp(f.detach() @ noise.detach().T / temperature).mean()


def insdis_nce_loss(f: torch.Tensor, positive: torch.Tensor, noise: torch.Tensor, temperature: float,
                    num_data: int, normaliser: torch.Tensor | float) -> torch.Tensor:
    """The NCE loss of instance discrimination for a batch.

    f: normalised embeddings [B, D]; positive: the bank entries of their own instances
    [B, D]; noise: m bank entries drawn uniformly [m, D] (shared by the rows); normaliser: Z.
    With P(i | f) = exp(v_i . f / tau) / Z and h(i, f) = P / (P + m / n), returns
    mean_b [ -log h(i_b, f_b) - sum_j log(1 - h(j, f_b)) ].
    """
    m = noise.shape[0]
    log_pn_m = math.log(m / num_data)  # log(m * P_n)
    log_z = torch.log(torch.as_tensor(normaliser, dtype=f.dtype, device=f.device))
    log_p_pos = (f * positive.detach()).sum(dim=1) / temperature - log_z
    log_p_noise = f @ noise.detach().T / temperature - log_z
    # log h = log P - log(P + m Pn) = -softplus(log m Pn - log P); log(1 - h) = -softplus(log P - log m Pn)
    data_term = F.softplus(log_pn_m - log_p_pos)
    noise_term = F.softplus(log_p_noise - log_pn_m).sum(dim=1)
    return (data_term + noise_term).mean()


@torch.no_grad()
def memory_update(bank: torch.Tensor, index: torch.Tensor, new: torch.Tensor, momentum: float) -> None:
    """v_i <- normalise(momentum * v_i + (1 - momentum) * f_i) for each row i of ``index``, in place."""
    mixed = momentum * bank[index] + (1.0 - momentum) * new.to(bank.dtype)
    bank[index] = F.normalize(mixed, dim=1)


def sample_noise_indices(num_data: int, m: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """m bank rows drawn uniformly with replacement (the noise distribution P_n = 1/n)."""
    return torch.randint(num_data, (m,), generator=generator, device=device)
