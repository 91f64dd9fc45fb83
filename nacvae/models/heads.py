"""Projection head g and prediction head r (docs/method.md, "Networks"), and the pretraining encoder."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ScaledMLP(nn.Module):
    """Linear(F, F) -> ReLU -> Linear(F, D), output divided by sqrt(D); no batch norm."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden_dim = hidden_dim or in_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))
        self.scale = 1.0 / math.sqrt(out_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h) * self.scale


# Projection heads a method may ask for (its SPEC's ``head``): NAC's sqrt(D)-scaled two-layer
# MLP, or one linear layer F -> D, the hash layer of the hashing papers.
HEADS = ("mlp", "linear")


class PretrainEncoder(nn.Module):
    """Backbone f with projection head g (code pre-activations a) and prediction head r.

    ``forward`` returns ``(h, a, l)``: features, pre-activations a = g(h) (g(h)/sqrt(D) for
    the MLP head) and scaled prediction logits l = r(h)/sqrt(D). Objectives that need no
    prediction head (SimCLR, MoCo-v2) construct the encoder with ``predictor=False``.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, code_dim: int, predictor: bool = True,
                 head: str = "mlp", head_std: float | None = None) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.code_dim = code_dim
        self.projector = ScaledMLP(feature_dim, code_dim) if head == "mlp" else nn.Linear(feature_dim, code_dim)
        if head == "linear" and head_std is not None:  # the hashing releases' hash layer: N(0, std^2), bias 0
            nn.init.normal_(self.projector.weight, 0.0, head_std)
            nn.init.zeros_(self.projector.bias)
        self.predictor = ScaledMLP(feature_dim, code_dim) if predictor else None
        # How codes are read from a (nacvae.registry.BINARISATIONS): sgn(a), or a bit's
        # sigmoid(a) above its mean over the training images (DeepBit), kept out of the
        # state dict: the checkpoint's meta records it (set_binarisation).
        self.binarisation = "sign"
        self.register_buffer("code_threshold", None, persistent=False)

    def set_binarisation(self, rule: str, threshold: torch.Tensor | None = None) -> None:
        """``rule`` "sign", or "sigmoid-mean" with the per-bit training mean of sigmoid(a) [D]."""
        if rule == "sign":
            self.binarisation, self.code_threshold = rule, None
        elif rule == "sigmoid-mean" and threshold is not None and tuple(threshold.shape) == (self.code_dim,):
            device = next(self.projector.parameters()).device
            self.binarisation, self.code_threshold = rule, threshold.detach().float().to(device)
        else:
            raise ValueError(f"a binarisation is sign, or sigmoid-mean with {self.code_dim} thresholds; got {rule!r}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        h = self.backbone(x)
        a = self.projector(h)
        l = self.predictor(h) if self.predictor is not None else None
        return h, a, l

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Binary codes as a bool tensor [B, D]: a > 0 (sgn a), or, for the sigmoid-mean
        binarisation, sigmoid(a) > the bit's training mean."""
        return binarize(self.projector(self.backbone(x)), self.binarisation, self.code_threshold)


def binarize(a: torch.Tensor, rule: str = "sign", threshold: torch.Tensor | None = None) -> torch.Tensor:
    """Bool codes of pre-activations a [N, D] under a binarisation rule (see PretrainEncoder)."""
    if rule == "sign":
        return a > 0
    return torch.sigmoid(a.float()) > threshold.to(a.device)


def ema_copy(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` to be updated as an exponential moving average."""
    key = copy.deepcopy(module)
    for p in key.parameters():
        p.requires_grad_(False)
    return key


@torch.no_grad()
def ema_update(key: nn.Module, query: nn.Module, momentum: float) -> None:
    """key <- m * key + (1 - m) * query for parameters; buffers (BN statistics) are copied.

    Done with multi-tensor (_foreach_) operations: a handful of kernel launches for the
    whole encoder rather than two per parameter.
    """
    keys, queries = list(key.parameters()), [p.detach() for p in query.parameters()]
    if keys:
        torch._foreach_mul_(keys, momentum)
        torch._foreach_add_(keys, queries, alpha=1.0 - momentum)
    key_buffers, query_buffers = list(key.buffers()), list(query.buffers())
    if key_buffers and hasattr(torch, "_foreach_copy_"):
        torch._foreach_copy_(key_buffers, query_buffers)
    else:  # older PyTorch
        for bk, bq in zip(key_buffers, query_buffers):
            bk.copy_(bq)
