"""Pretraining methods: an encoder plus the state an objective needs (key encoder, queue).

Each method maps a pair of augmented batches to a scalar loss; the training loop knows
nothing else about it. Objectives themselves live in ``nacvae.objectives``.
"""

from __future__ import annotations

import torch
from torch import nn

from nacvae import distributed
from nacvae.errors import ConfigError
from nacvae.models.heads import PretrainEncoder, ema_copy, ema_update
from nacvae.objectives import (
    KeyQueue, info_nce, nac_loss, nac_momentum_loss, nt_xent, prediction_head_loss, sample_channel_signs,
)
from nacvae.objectives.nac import Gather, channel_beta

OBJECTIVES = ("nac", "simclr", "moco")


class Method(nn.Module):
    """Base: ``loss(x1, x2, generator)`` and ``after_step()`` (for EMA updates).

    Encoders run under bf16 autocast when ``amp_dtype`` is set and take channels-last input
    when ``channels_last`` is set; their outputs are cast to float32 so that every objective
    computes in float32.
    """

    encoder: PretrainEncoder
    gather: Gather | None = None  # set for multi-process training (nacvae.distributed)
    gather_no_grad: Gather | None = None
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    def loss(self, x1: torch.Tensor, x2: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (loss, the view-1 code pre-activations a for code statistics)."""
        raise NotImplementedError

    def after_step(self) -> None:
        pass

    def num_negatives(self, global_batch: int) -> int | None:
        """For NAC: how many codes the negative term sums over, so that the loss of the
        trivial solution z = 0 is log of it. None for objectives without that property."""
        return None

    def wrap_encoder(self, wrapper: nn.Module | None) -> None:
        """Run the trainable encoder through ``wrapper`` (DistributedDataParallel around
        ``self.encoder``). It is kept out of the module tree, so state dicts keep their keys."""
        self.__dict__["_encoder_wrapper"] = wrapper

    @property
    def query_encoder(self) -> nn.Module:
        wrapper = self.__dict__.get("_encoder_wrapper")
        return self.encoder if wrapper is None else wrapper

    def _encode_pair(self, x1: torch.Tensor, x2: torch.Tensor, encoder: nn.Module):
        b = x1.shape[0]
        x = torch.cat([x1, x2], dim=0)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None):
            h, a, l = encoder(x)
        # Half-precision outputs of autocast become float32; float64 stays float64.
        as_float = lambda t: t.float() if t is not None and t.element_size() < 4 else t  # noqa: E731
        split = lambda t: (None, None) if t is None else (t[:b], t[b:])  # noqa: E731
        return split(as_float(h)), split(as_float(a)), split(as_float(l))

    def _all_keys(self, keys: torch.Tensor) -> torch.Tensor:
        return keys if self.gather_no_grad is None else self.gather_no_grad(keys)[0]


class NAC(Method):
    def __init__(self, encoder: PretrainEncoder, flip_prob: float) -> None:
        super().__init__()
        channel_beta(flip_prob)  # validates p
        self.encoder = encoder
        self.flip_prob = flip_prob

    def loss(self, x1, x2, generator):
        _, (a1, a2), (l1, l2) = self._encode_pair(x1, x2, self.query_encoder)
        return nac_loss(a1, a2, l1, l2, self.flip_prob, generator=generator, gather=self.gather), a1

    def num_negatives(self, global_batch: int) -> int:
        return 2 * global_batch


class NACMomentum(Method):
    """NAC with an EMA key encoder and a queue of key codes (method.md §4)."""

    def __init__(self, encoder: PretrainEncoder, flip_prob: float, queue_size: int,
                 momentum: float = 0.99, l2_weight: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        channel_beta(flip_prob)
        self.encoder = encoder
        self.key_encoder = ema_copy(encoder)
        self.flip_prob, self.momentum, self.l2_weight = flip_prob, momentum, l2_weight
        g = torch.Generator().manual_seed(seed)
        self.queue = KeyQueue(queue_size, encoder.code_dim, 1e-3 * torch.randn(queue_size, encoder.code_dim, generator=g))

    def loss(self, x1, x2, generator):
        (h1, h2), (a1, a2), _ = self._encode_pair(x1, x2, self.query_encoder)
        with torch.no_grad():
            self.key_encoder.train(self.encoder.training)
            _, (ka1, ka2), (kl1, kl2) = self._encode_pair(x1, x2, self.key_encoder)
            self.queue.enqueue(self._all_keys(torch.tanh(torch.cat([ka1, ka2], dim=0))))
        a = torch.cat([a1, a2], dim=0)
        z = torch.tanh(a)
        c_hat = sample_channel_signs(tuple(z.shape), self.flip_prob, generator, z.device, z.dtype) * z
        key_partner_logits = torch.cat([kl2, kl1], dim=0)
        encoder_term = nac_momentum_loss(a, c_hat, key_partner_logits, self.queue.keys, self.flip_prob, self.l2_weight)
        # The query prediction head learns to decode each view's (fixed) noisy code from the
        # (fixed) features of its partner; it does not shape the backbone.
        h_partner = torch.cat([h2, h1], dim=0).detach()
        head_term = prediction_head_loss(c_hat.detach(), self.encoder.predictor(h_partner))
        return encoder_term + head_term, a1

    def num_negatives(self, global_batch: int) -> int:
        return len(self.queue.keys)

    def after_step(self) -> None:
        ema_update(self.key_encoder, self.encoder, self.momentum)


class SimCLR(Method):
    def __init__(self, encoder: PretrainEncoder, temperature: float = 0.5) -> None:
        super().__init__()
        self.encoder = encoder
        self.temperature = temperature

    def loss(self, x1, x2, generator):
        _, (a1, a2), _ = self._encode_pair(x1, x2, self.query_encoder)
        return nt_xent(a1, a2, self.temperature, gather=self.gather), a1


class MoCo(Method):
    """MoCo-v2: EMA key encoder, queue of normalised keys, symmetric InfoNCE."""

    def __init__(self, encoder: PretrainEncoder, queue_size: int, momentum: float = 0.99,
                 temperature: float = 0.2, seed: int = 0) -> None:
        super().__init__()
        self.encoder = encoder
        self.key_encoder = ema_copy(encoder)
        self.momentum, self.temperature = momentum, temperature
        g = torch.Generator().manual_seed(seed)
        init = nn.functional.normalize(torch.randn(queue_size, encoder.code_dim, generator=g), dim=1)
        self.queue = KeyQueue(queue_size, encoder.code_dim, init)

    def loss(self, x1, x2, generator):
        _, (q1, q2), _ = self._encode_pair(x1, x2, self.query_encoder)
        with torch.no_grad():
            self.key_encoder.train(self.encoder.training)
            _, (k1, k2), _ = self._encode_pair(x1, x2, self.key_encoder)
        negatives = self.queue.keys.clone()
        loss = 0.5 * (info_nce(q1, k2, negatives, self.temperature) + info_nce(q2, k1, negatives, self.temperature))
        keys = nn.functional.normalize(torch.cat([k1, k2], dim=0), dim=1)
        self.queue.enqueue(self._all_keys(keys))
        return loss, q1

    def after_step(self) -> None:
        ema_update(self.key_encoder, self.encoder, self.momentum)


def build_method(objective: str, encoder: PretrainEncoder, *, flip_prob: float, momentum_variant: bool,
                 queue_size: int, ema: float, temperature: float | None, l2_weight: float, seed: int) -> Method:
    if objective == "nac":
        if momentum_variant:
            return NACMomentum(encoder, flip_prob, queue_size, ema, l2_weight, seed)
        return NAC(encoder, flip_prob)
    if objective == "simclr":
        return SimCLR(encoder, temperature or 0.5)
    if objective == "moco":
        return MoCo(encoder, queue_size, ema, temperature or 0.2, seed)
    raise ConfigError(f"Unknown objective '{objective}'; choose one of {', '.join(OBJECTIVES)}.")


def prepare_method(method: Method, device: torch.device, *, amp: bool, compile: bool = False,
                   sync_bn: bool = False) -> Method:
    """Speed-ups for the device and, under torchrun, the multi-process wiring.

    Call once the weights are final (after resuming). No step replaces a parameter object,
    so an optimiser built earlier keeps working.
    """
    method.amp_dtype = torch.bfloat16 if amp else None
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes
    if device.type in ("cuda", "cpu"):
        # cuDNN's and oneDNN's convolutions run without layout reorders in NHWC: on a
        # 2-core CPU a small conv net's step is ~25% faster, a ResNet-18's about the same.
        method.channels_last = True
        method.to(memory_format=torch.channels_last)
    multi = distributed.is_distributed()
    if multi and sync_bn:
        # The trained encoder only: a key encoder runs without gradients and its weights
        # follow the encoder by EMA, so per-process statistics serve it, and every
        # SyncBatchNorm layer costs collectives and a host-device wait per forward pass.
        method.encoder = nn.SyncBatchNorm.convert_sync_batchnorm(method.encoder)
    if compile:
        for encoder in (method.encoder, getattr(method, "key_encoder", None)):
            if encoder is not None:
                encoder.backbone.compile()  # in place: state-dict keys are unchanged
    if multi:
        from torch.nn.parallel import DistributedDataParallel

        # Only the trainable encoder is synchronised: key encoders follow its (identical)
        # weights by EMA and queues receive every process's keys, so they stay identical.
        ddp = DistributedDataParallel(method.encoder, device_ids=[device.index] if device.type == "cuda" else None,
                                      gradient_as_bucket_view=True)
        method.wrap_encoder(ddp)
        method.gather = distributed.gather_with_grad
        method.gather_no_grad = distributed.gather_no_grad
    return method
