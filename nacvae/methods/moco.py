"""MoCo-v2: an EMA key encoder, a queue of normalised keys and a symmetric InfoNCE."""

from __future__ import annotations

import torch
from torch import nn

from nacvae.methods.base import Method
from nacvae.models.heads import PretrainEncoder, ema_copy, ema_update
from nacvae.objectives import KeyQueue, info_nce
from nacvae.registry import MethodSpec, Option

SPEC = MethodSpec(
    name="moco",
    summary="MoCo-v2: InfoNCE against a queue of momentum-encoder keys",
    reference="Chen et al., 2020 (arXiv 2003.04297)",
    group="main",
    order=2,
    options=(
        Option("temperature", 0.2, help="Softmax temperature.", low=0.0, low_open=True),
        Option("queue_size", 1_024, kind="int", least=1, preset=True, help="Queue length."),
        Option("ema", 0.99, help="Key-encoder momentum.", low=0.0, high=1.0),
    ),
)


class MoCo(Method):
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


def build(encoder: PretrainEncoder, options: dict, *, seed: int, teacher=None) -> Method:
    return MoCo(encoder, options["queue_size"], options["ema"], options["temperature"], seed)
