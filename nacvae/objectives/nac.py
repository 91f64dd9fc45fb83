"""Neural Activation Coding objective (docs/method.md, "The loss" and "Momentum-queue variant"), as pure tensor functions."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from nacvae.errors import ConfigError

# gather(t) -> (all ranks' rows concatenated in rank order, offset of this rank's rows)
Gather = Callable[[torch.Tensor], tuple[torch.Tensor, int]]


def channel_beta(p: float) -> float:
    """beta = 1/2 log((1-p)/p): log P(c_hat | c) = beta * c_hat . c + const for a BSC(p)."""
    if not 0.0 < p < 0.5:
        raise ConfigError(f"The flip probability must lie strictly between 0 and 0.5, got {p}.")
    return 0.5 * math.log((1.0 - p) / p)


def log_cosh(u: torch.Tensor) -> torch.Tensor:
    """log cosh(u), stable for large |u|: |u| + softplus(-2|u|) - log 2."""
    au = u.abs()
    return au + F.softplus(-2.0 * au) - math.log(2.0)


def sample_channel_signs(
    shape: tuple[int, ...], p: float, generator: torch.Generator | None = None,
    device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Flip signs m in {-1, +1}, i.i.d. with P(m = -1) = p."""
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    return torch.where(u < p, -1.0, 1.0).to(dtype)


def code_log_likelihood(c_hat: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Q(c_hat | logits) of the factorised ±1 decoder in its exponential-family form.

    sum_d [1/2 c_hat_d l_d - log cosh(l_d / 2)], linear in c_hat, so it stays meaningful for the
    relaxed noisy code c_hat = m * tanh(a). Returns one value per row.
    """
    return (0.5 * c_hat * logits - log_cosh(0.5 * logits)).sum(dim=-1)


def nac_loss(
    a1: torch.Tensor,
    a2: torch.Tensor,
    l1: torch.Tensor,
    l2: torch.Tensor,
    p: float,
    signs: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    gather: Gather | None = None,
) -> torch.Tensor:
    """The NAC loss for a batch of B images seen in two views (non-momentum form).

    a1, a2: scaled code pre-activations [B, D] of view 1 and view 2; l1, l2: their scaled
    prediction logits [B, D]; p: channel flip probability; signs: optional flips [2B, D] of ±1,
    view-1 rows first (drawn from ``generator`` when omitted); gather: all-gathers the clean
    codes across processes (with gradients) so that the negative term uses the global batch.

    loss = mean_k [ logsumexp_j beta c_hat_k . z_j  -  log Q(c_hat_k | l_partner(k)) ]
    with z = tanh(a), c_hat = m * z, and the sum over j covering every clean code, k itself
    and its partner included. Nothing is detached.
    """
    beta = channel_beta(p)
    a = torch.cat([a1, a2], dim=0)
    partner_logits = torch.cat([l2, l1], dim=0)
    z = torch.tanh(a)
    if signs is None:
        signs = sample_channel_signs(tuple(z.shape), p, generator, z.device, z.dtype)
    elif signs.shape != z.shape:
        raise ValueError(f"signs must have shape {tuple(z.shape)}, got {tuple(signs.shape)}")
    c_hat = signs.to(z.dtype) * z
    keys = z if gather is None else gather(z)[0]
    negative = torch.logsumexp(beta * (c_hat @ keys.T), dim=1)
    positive = code_log_likelihood(c_hat, partner_logits)
    return (negative - positive).mean()


def nac_momentum_loss(
    a_query: torch.Tensor,
    c_hat: torch.Tensor,
    key_partner_logits: torch.Tensor,
    queue: torch.Tensor,
    p: float,
    l2_weight: float,
) -> torch.Tensor:
    """The encoder term of the momentum-queue variant (docs/method.md, "Momentum-queue variant").

    a_query: the query encoder's scaled pre-activations [N, D] (both views stacked);
    c_hat: their noisy relaxed codes m * tanh(a_query); key_partner_logits: the key encoder's
    prediction logits of each row's partner view; queue: key codes [K, D] (already holding
    this step's keys). Returns mean_k [logsumexp_j beta c_hat_k . key_j - log Q(c_hat_k | l_key)]
    + l2_weight * mean_k ||tanh(a_k)||^2. Multiplies by beta (the public code divides).
    """
    beta = channel_beta(p)
    negative = torch.logsumexp(beta * (c_hat @ queue.T), dim=1)
    positive = code_log_likelihood(c_hat, key_partner_logits)
    penalty = torch.tanh(a_query).pow(2).sum(dim=1)
    return (negative - positive).mean() + l2_weight * penalty.mean()


def prediction_head_loss(c_hat: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """-log Q(c_hat | logits) averaged over rows; the caller detaches what must not learn."""
    return -code_log_likelihood(c_hat, logits).mean()
