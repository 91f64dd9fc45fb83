"""SimCLR's NT-Xent and MoCo-v2's InfoNCE with a key queue (docs/method.md, "Baselines")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nacvae.objectives.nac import Gather


def nt_xent(p1: torch.Tensor, p2: torch.Tensor, temperature: float = 0.5, gather: Gather | None = None) -> torch.Tensor:
    """SimCLR's loss for projections p1, p2 [B, D] of two views.

    Rows are L2-normalised; each of the 2B views is scored against the 2B - 1 others
    (itself masked) and cross-entropy picks its partner. With ``gather`` the candidates are
    every process's views.
    """
    q = F.normalize(torch.cat([p1, p2], dim=0), dim=1)
    n = q.shape[0]
    keys, offset = (q, 0) if gather is None else gather(q)
    logits = (q @ keys.T) / temperature
    rows = torch.arange(n, device=q.device)
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[rows, rows + offset] = True
    logits = logits.masked_fill(self_mask, float("-inf"))
    targets = (rows + n // 2) % n + offset
    return F.cross_entropy(logits, targets)


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """MoCo's InfoNCE: normalised queries q [B, D], their positive keys k [B, D] and
    negatives from the queue [K, D] (normalised keys of earlier batches)."""
    q = F.normalize(q, dim=1)
    k = F.normalize(k, dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)
    negative = q @ queue.T
    logits = torch.cat([positive, negative], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


class KeyQueue(nn.Module):
    """A FIFO of the K most recent keys, stored as a ring buffer.

    ``enqueue`` overwrites the oldest rows; ``keys`` holds them in storage order (order does
    not matter to the losses). ``ordered()`` returns them oldest first.
    """

    def __init__(self, size: int, dim: int, init: torch.Tensor | None = None) -> None:
        super().__init__()
        if init is None:
            init = torch.zeros(size, dim)
        if init.shape != (size, dim):
            raise ValueError(f"init must have shape {(size, dim)}")
        self.register_buffer("keys", init.clone())
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def enqueue(self, new: torch.Tensor) -> None:
        new = new.detach().to(self.keys.dtype)
        if new.shape[0] >= self.size:  # only the newest K survive
            new = new[-self.size:]
        n = new.shape[0]
        idx = (self.ptr + torch.arange(n, device=self.keys.device)) % self.size
        self.keys[idx] = new
        self.ptr.copy_((self.ptr + n) % self.size)

    def ordered(self) -> torch.Tensor:
        return torch.roll(self.keys, shifts=-int(self.ptr), dims=0)
