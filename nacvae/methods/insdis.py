"""Instance discrimination (InsDis): a memory bank of one unit embedding per training image,
with the exact softmax over the bank or its NCE estimate (docs/method.md, "Baselines").

Its recipe is the authors' release (zhirongw/lemniscate.pytorch, cifar.py and its README):
one Linear 512 -> 128 embedding (L2-normalised), SGD lr 0.03, momentum 0.9, weight decay
5e-4, batch 128, a constant rate (cifar.py's step schedule is defined but its call is
commented out), one view per step whose embedding updates the bank.
"""

from __future__ import annotations

import torch
from torch import nn

from nacvae import distributed
from nacvae.methods.base import Method
from nacvae.models.heads import PretrainEncoder
from nacvae.objectives import (
    insdis_nce_loss, insdis_softmax_loss, memory_update, nce_normaliser, sample_noise_indices,
)
from nacvae.registry import MethodSpec, Option

SPEC = MethodSpec(
    name="insdis",
    summary="Instance discrimination against a memory bank",
    reference="Wu et al., CVPR 2018",
    order=3,
    streams=False,  # one bank row per training image
    head="linear",
    views=1,
    recipe=dict(optimizer="sgd", lr=0.03, weight_decay=5e-4, batch_size=128, warmup_steps=0, schedule="step"),
    options=(
        Option("temperature", 0.07, help="Softmax temperature.", low=0.0, low_open=True),
        Option("negatives", None, kind="int", optional=True,
               help="Memory-bank entries drawn per step for NCE, or 0 for the exact softmax over the bank "
                    "[exact up to 50,000 training images, else 4096]."),
        Option("bank_momentum", 0.5, help="Memory-bank momentum.", low=0.0, high=1.0),
    ),
)


class InsDis(Method):
    """Each view of an image is a draw of its instance (one per step under its own recipe,
    two under the shared one, their mean then updating the bank). The bank (and the NCE normaliser Z,
    estimated on the first step) are buffers, so they are part of the checkpoint; under
    torchrun every process applies every process's updates, so the banks stay identical.
    The update of a step is applied in ``after_step``, once the loss has been differentiated.
    """

    # With ``negatives=None`` a bank of at most this many images (CIFAR-10's 50,000, where the
    # paper computed the softmax exactly) gets the exact softmax, a larger one NCE with 4096.
    exact_up_to, default_negatives = 50_000, 4096

    def __init__(self, encoder: PretrainEncoder, temperature: float = 0.07, negatives: int | None = None,
                 bank_momentum: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        self.encoder = encoder
        self.temperature, self.negatives, self.bank_momentum, self.seed = temperature, negatives, bank_momentum, seed
        self.register_buffer("normaliser", torch.zeros((), dtype=torch.float64))  # Z; 0 = not yet estimated
        self._indices: torch.Tensor | None = None
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def exact(self) -> bool:
        return self.noise_draws == 0

    def attach_dataset(self, images, mean, std) -> None:
        if self.negatives is None:
            self.noise_draws = 0 if len(images) <= self.exact_up_to else self.default_negatives
        else:
            self.noise_draws = self.negatives
        g = torch.Generator().manual_seed(self.seed)
        bank = nn.functional.normalize(torch.randn(len(images), self.encoder.code_dim, generator=g), dim=1)
        self.register_buffer("memory", bank.to(images.device))

    def begin_step(self, indices: torch.Tensor) -> None:
        self._indices = indices

    def loss(self, x1, x2, generator):
        if self._indices is None:
            raise RuntimeError("InsDis needs begin_step(indices) before each loss")
        _, (a1, a2), _ = self._encode_pair(x1, x2, self.query_encoder)
        f1 = nn.functional.normalize(a1, dim=1)
        if a2 is None:
            f, index, update = f1, self._indices.to(self.memory.device), f1
        else:
            f2 = nn.functional.normalize(a2, dim=1)
            f = torch.cat([f1, f2], dim=0)
            index = torch.cat([self._indices, self._indices]).to(self.memory.device)
            update = 0.5 * (f1 + f2)
        n = self.memory.shape[0]
        if self.exact:
            loss = insdis_softmax_loss(f, self.memory, index, self.temperature)
        else:
            noise = self.memory[sample_noise_indices(n, self.noise_draws, generator, self.memory.device)]
            if float(self.normaliser) == 0.0:
                z = nce_normaliser(f, noise, self.temperature, n).double()
                self.normaliser.copy_(distributed.all_reduce_sum(z) / distributed.world_size())
            loss = insdis_nce_loss(f, self.memory[index], noise, self.temperature, n, self.normaliser.to(f.dtype))
        # Every process's rows and embeddings, for an identical bank update everywhere.
        rows = self._all_keys(self._indices.to(self.memory.device))
        new = self._all_keys(update.detach())
        self._pending = (rows, new)
        return loss, a1

    def after_step(self) -> None:
        if self._pending is not None:
            memory_update(self.memory, *self._pending, self.bank_momentum)
            self._pending = None


def build(encoder: PretrainEncoder, options: dict, *, seed: int, teacher=None) -> Method:
    return InsDis(encoder, options["temperature"], options["negatives"], options["bank_momentum"], seed)
