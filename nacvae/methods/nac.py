"""Neural Activation Coding: binary codes sgn(a) that survive a binary symmetric channel.

The plain form contrasts each view's noisy code with the batch's codes (docs/method.md,
"The loss"); ``--momentum`` keeps an EMA key encoder and a queue of key codes instead
("Momentum-queue variant"). Both read the code from the prediction head's logits.
"""

from __future__ import annotations

import torch

from nacvae.methods.base import Method
from nacvae.models.heads import PretrainEncoder, ema_copy, ema_update
from nacvae.objectives import KeyQueue, nac_loss, nac_momentum_loss, prediction_head_loss, sample_channel_signs
from nacvae.objectives.nac import channel_beta
from nacvae.registry import MethodSpec, Option

SPEC = MethodSpec(
    name="nac",
    summary="Neural Activation Coding: codes that survive a noisy channel",
    reference="Park et al., ICML 2021",
    group="main",
    order=0,
    predictor=True,
    options=(
        Option("flip_prob", 0.1, help="NAC channel flip probability p, 0 < p < 0.5.", low=0.0, high=0.5,
               low_open=True),
        Option("momentum", False, kind="flag",
               help="NAC's momentum-queue variant (EMA key encoder and a queue of key codes)."),
        Option("queue_size", 1_024, kind="int", least=1, preset=True, help="Queue length (with --momentum)."),
        Option("ema", 0.99, help="Key-encoder momentum (with --momentum).", low=0.0, high=1.0),
        Option("l2_weight", 0.1, low=0.0,
               help="L2 penalty on the codes with --momentum (0.1 for classification, 0 for hashing)."),
    ),
)


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
    """NAC with an EMA key encoder and a queue of key codes (docs/method.md, "Momentum-queue variant")."""

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


def build(encoder: PretrainEncoder, options: dict, *, seed: int, teacher=None) -> Method:
    if options["momentum"]:
        return NACMomentum(encoder, options["flip_prob"], options["queue_size"], options["ema"],
                           options["l2_weight"], seed)
    return NAC(encoder, options["flip_prob"])
