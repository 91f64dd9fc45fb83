"""A method's binarisation, recorded in its checkpoint: how ``eval retrieval`` / ``eval codes``
read bits from the pre-activations a (``nacvae.registry.BINARISATIONS``).

Most methods read sgn(a). DeepBit's release binarises each bit at the mean of its activation
over all training images, so the end of a DeepBit run computes that mean (the images
un-augmented, normalised as for evaluation, the encoder in eval mode) and stores it.
"""

from __future__ import annotations

from typing import Any

import torch

from nacvae.data.augment import normalize
from nacvae.data.stream import eval_batches
from nacvae.models.heads import PretrainEncoder
from nacvae.models.modes import eval_mode


def binarisation_meta(rule: str, threshold: torch.Tensor | None = None) -> dict[str, Any]:
    """The checkpoint meta's ``binarisation`` entry."""
    return {"rule": rule} if threshold is None else {"rule": rule, "threshold": threshold.double().tolist()}


@torch.no_grad()
def training_bit_means(encoder: PretrainEncoder, images: torch.Tensor | None, mean, std, stream=None,
                       batch_size: int = 256, workers: int = 0) -> torch.Tensor:
    """Mean of sigmoid(a) over the training images [D] (float64 sums), in memory or streamed."""
    device = next(encoder.parameters()).device
    total = torch.zeros(encoder.code_dim, dtype=torch.float64)
    count = 0
    if images is not None:
        batches = (normalize(images[s:s + batch_size], mean, std).to(device) for s in range(0, len(images), batch_size))
    else:
        batches = (normalize(b, mean, std) for b in eval_batches(stream, batch_size, workers, device))
    with eval_mode(encoder):
        for x in batches:
            _, a, _ = encoder(x)
            total += torch.sigmoid(a.float()).double().sum(dim=0).cpu()
            count += len(x)
    return total / max(count, 1)
