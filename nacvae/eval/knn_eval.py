"""``evaluate_knn``: weighted k-NN accuracy of an encoder's frozen features on a dataset, end to end.

The train split's backbone features h are the memory and the test split's the queries
(``nacvae.eval.knn``: cosine similarity, the k nearest vote with weight exp(s / tau)). The
memory goes through the running top k batch by batch and is never held whole, so a
streamed dataset (ImageNet, a large folder) is decoded by worker processes and scored as it
comes. The result is a plain dict of numbers that can be printed as JSON or appended to a
run's metrics.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nacvae.data.augment import normalize
from nacvae.data.stream import StreamedImages
from nacvae.eval.features import (
    as_device, bad_images_for, bad_images_result, check_batch_size, check_channels, in_precision, labelled_splits,
    normalization_stats, resolve_workers, streamed_batches
)
from nacvae.eval.knn import DEFAULT_K, DEFAULT_TEMPERATURE, RunningTopK, check_knn_options, topk_accuracies
from nacvae.models.backbones import fast_layout
from nacvae.progress import bar

__all__ = ["evaluate_knn"]


def evaluate_knn(
    encoder: nn.Module,
    data: str,
    data_dir: str | Path | None = None,
    k: int = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
    batch_size: int = 1000,
    device="cpu",
    image_size: int | None = None,
    download: bool = True,
    workers: int | None = None,
    skip_bad_images: bool = False,
    amp: bool | None = None,
) -> dict[str, Any]:
    """Top-1 and top-5 accuracy of weighted k-NN on the frozen backbone's features h.

    Memory: every train image; queries: every test image; both un-augmented, normalised
    with the dataset's statistics, the encoder in eval mode. ``k`` is capped at the memory
    size (recorded as ``k``). Multi-label data (FLICKR-25K) and unlabelled folders are
    refused: a k-NN classifier votes for one class per image.
    """
    check_knn_options(k, temperature)
    batch_size = check_batch_size(batch_size)
    device = as_device(device)
    start = time.perf_counter()
    train, test = labelled_splits(data, data_dir, image_size, download, "k-NN classification votes for",
                                  "k-NN evaluation")
    check_channels(encoder, train.image_shape[0], data)
    num_classes = len(train.classes)
    bad = bad_images_for(skip_bad_images)
    mean, std = normalization_stats(data, data_dir, image_size, download, train, workers, bad)
    encoder = fast_layout(encoder, device).eval()
    sample = None if isinstance(train, StreamedImages) else train.images[:batch_size]
    encoder, precision = in_precision(encoder, device, sample, mean, std, amp)
    backbone = encoder.backbone

    def features(x):
        return torch.flatten(backbone(x), 1).float()

    queries = torch.cat(list(_batches(features, test, mean, std, batch_size, device, workers, bad)))
    top = RunningTopK(queries, k=k)
    first = 0
    for out in _batches(features, train, mean, std, batch_size, device, workers, bad):
        top.add(out, train.labels[first:first + len(out)])  # batches come in order
        first += len(out)
    acc = topk_accuracies(top.votes(num_classes, temperature), test.labels)
    return {
        "top1": acc[1],
        "top5": acc[5],
        "k": min(k, len(train)),
        "temperature": temperature,
        "features": "h",
        "similarity": "cosine",
        "feature_dim": int(queries.shape[1]),
        "num_classes": num_classes,
        "num_train": len(train),
        "num_test": len(test),
        "batch_size": batch_size,
        "dataset": data,
        "amp": precision.amp,
        **bad_images_result(bad),
        "seconds": round(time.perf_counter() - start, 2),
    }


@torch.no_grad()
def _memory_batches(fn, images: torch.Tensor, mean, std, batch_size: int, device):
    for s in bar(range(0, len(images), batch_size), desc="features", unit="batch"):
        yield fn(normalize(images[s:s + batch_size], mean, std).to(device))


def _batches(fn, split, mean, std, batch_size: int, device, workers, bad=None):
    """``fn`` of each batch of the split's evaluation images, in order, on ``device``."""
    if isinstance(split, StreamedImages):
        return streamed_batches(fn, split, mean, std, batch_size, device, resolve_workers(workers), desc="features",
                                bad_images=bad)
    return _memory_batches(fn, split.images, mean, std, batch_size, device)
