"""``evaluate_codes``: the spread of an encoder's codes over one split of a dataset, end to end.

The codes sgn(a) of every image of the split are computed with the frozen encoder and
summarised by ``nacvae.eval.codes.code_statistics``: how many distinct codewords there
are, how far apart they lie in Hamming distance, and how balanced each bit is (the
paper's proxy for expressivity). The result is a plain dict of numbers that can be
printed as JSON or appended to a run's metrics.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from torch import nn

from nacvae.data.stream import StreamedImages
from nacvae.eval.codes import code_statistics
from nacvae.eval.features import (
    as_device, bad_images_for, bad_images_result, check_batch_size, check_channels, code_rule, image_codes,
    in_precision, normalization_stats, open_split, require_projector, resolve_workers, streamed_outputs
)
from nacvae.models.backbones import fast_layout

__all__ = ["evaluate_codes"]


def evaluate_codes(
    encoder: nn.Module,
    data: str,
    data_dir: str | Path | None = None,
    split: str = "test",
    batch_size: int = 1000,
    device="cpu",
    image_size: int | None = None,
    download: bool = True,
    workers: int | None = None,
    skip_bad_images: bool = False,
    amp: bool | None = None,
) -> dict[str, Any]:
    """Statistics of the codes sgn(a) of every image of one split (``code_statistics``).

    Distinct codewords, their fraction, the exact mean Hamming distance over all pairs
    of different images (also as a fraction of the code length), and the bit balance.
    """
    require_projector(encoder, "Code statistics")
    batch_size = check_batch_size(batch_size)
    device = as_device(device)
    start = time.perf_counter()
    images = open_split(data, split, data_dir, image_size, download)
    check_channels(encoder, images.image_shape[0], data)
    bad = bad_images_for(skip_bad_images)
    mean, std = normalization_stats(data, data_dir, image_size, download, images if split == "train" else None,
                                    workers, bad)
    encoder = fast_layout(encoder, device).eval()
    sample = None if isinstance(images, StreamedImages) else images.images[:batch_size]
    encoder, precision = in_precision(encoder, device, sample, mean, std, amp)
    if isinstance(images, StreamedImages):
        codes = streamed_outputs(encoder.codes, images, mean, std, batch_size, device, resolve_workers(workers),
                                 bad_images=bad)
    else:
        codes = image_codes(encoder, images.images, mean, std, batch_size, device)
    stats = code_statistics(codes)
    hamming = stats["mean_pairwise_hamming"]
    return {
        **stats,
        "mean_pairwise_hamming_fraction": hamming / stats["code_length"],
        "codes": code_rule(encoder),
        "dataset": data,
        "split": split,
        "amp": precision.amp,
        **bad_images_result(bad),
        "seconds": round(time.perf_counter() - start, 2),
    }
