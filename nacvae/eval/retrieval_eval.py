"""``evaluate_retrieval``: Hamming-ranking mAP of an encoder's codes on a dataset, end to end.

The codes sgn(a) (a = the projection head's output) of the pooled train+test images are
split into queries and gallery by ``nacvae.data.pool`` (the paper's split for CIFAR-10,
and for FLICKR-25K at its full size; an analogue elsewhere), and scored with ``nacvae.eval.retrieval``'s
Hamming ranking or the paper code's ranking (``nacvae.eval.paper_ranking``). The result
is a plain dict of numbers that can be printed as JSON or appended to a run's metrics.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nacvae.checks import check_int
from nacvae.data.catalog import streams
from nacvae.data.flickr import PAPER_QUERIES, PAPER_TRAIN
from nacvae.data.pool import retrieval_pool, streamed_retrieval_pool
from nacvae.errors import ConfigError, DataError
from nacvae.eval.features import (
    as_device, bad_images_for, bad_images_result, check_batch_size, check_channels, code_rule, image_codes,
    in_precision, normalization_stats, require_projector, resolve_workers, streamed_outputs
)
from nacvae.eval.paper_ranking import paper_mean_average_precision
from nacvae.eval.retrieval import mean_average_precision
from nacvae.models.backbones import fast_layout

__all__ = ["RANKINGS", "evaluate_retrieval"]

# hamming: Hamming distance, ties by gallery index; paper: the paper code's {0,1} inner product.
RANKINGS = ("hamming", "paper")


def evaluate_retrieval(
    encoder: nn.Module,
    data: str,
    data_dir: str | Path | None = None,
    topk: int | None = None,
    count_empty: bool = False,
    seed: int = 0,
    queries_per_class: int | None = None,
    batch_size: int = 1000,
    device="cpu",
    image_size: int | None = None,
    download: bool = True,
    ranking: str = "hamming",
    workers: int | None = None,
    skip_bad_images: bool = False,
    amp: bool | None = None,
) -> dict[str, Any]:
    """Hamming-ranking mAP@topk of the codes sgn(a) on the retrieval split of ``data``.

    The split (``retrieval_pool``, seeded by ``seed``) pools the train and test images
    and draws ``queries_per_class`` queries per class (1,000 for CIFAR-10, the paper's
    split; see ``nacvae.data.splits`` elsewhere); every other image is the gallery. Ties
    in distance are ranked by gallery index; queries without a relevant item in the top
    ``topk`` are left out of the mean, or count as 0 with ``count_empty``. With
    ``ranking="paper"`` the gallery is ranked as the paper's code does it instead: by the
    inner product of {0,1} codes, ties as numpy's default sort leaves them
    (``nacvae.eval.paper_ranking``).

    Streamed datasets are decoded batch by batch by ``workers`` processes. FLICKR-25K is
    multi-label: its split draws 2,000 queries from all labelled images
    (``nacvae.data.flickr``), and a gallery item is relevant when it shares a label with
    the query.
    """
    if ranking not in RANKINGS:
        raise ConfigError(f"Unknown ranking '{ranking}'; choose one of {', '.join(RANKINGS)}.")

    require_projector(encoder, "Retrieval")
    batch_size = check_batch_size(batch_size)
    check_int("topk", topk, optional=True)
    check_int("queries-per-class", queries_per_class, optional=True)
    device = as_device(device)
    start = time.perf_counter()
    streamed = streams(data, image_size)
    make_pool = streamed_retrieval_pool if streamed else retrieval_pool
    extra = {} if streamed else {"download": download}
    pool = make_pool(data, data_dir, image_size, seed=seed, queries_per_class=queries_per_class, **extra)
    multi_label = pool.labels.dim() == 2
    if multi_label and ranking != "hamming":
        raise ConfigError(f"--ranking {ranking} takes one class per image, and {data} is multi-label; "
                          "use --ranking hamming.")
    classes = int(pool.labels.shape[1]) if multi_label else int(torch.unique(pool.labels).numel())
    if classes < 2:  # every gallery item would be relevant to every query: mAP 1 for any codes
        raise DataError(f"Retrieval needs at least 2 classes, and the dataset {data} has {classes}.")
    query, gallery = pool.split["query"], pool.split["gallery"]
    if topk is not None and topk > len(gallery):
        raise ConfigError(f"--topk is {topk} but the gallery holds only {len(gallery)} images.")
    check_channels(encoder, pool.stream.channels if streamed else int(pool.images.shape[1]), data)
    bad = bad_images_for(skip_bad_images)
    mean, std = normalization_stats(data, data_dir, image_size, download, workers=workers, bad_images=bad)
    encoder = fast_layout(encoder, device).eval()
    encoder, precision = in_precision(encoder, device, None if streamed else pool.images[query][:batch_size], mean,
                                      std, amp)
    if streamed:
        w = resolve_workers(workers)
        q_codes = streamed_outputs(encoder.codes, pool.stream, mean, std, batch_size, device, w, query, bad_images=bad)
        g_codes = streamed_outputs(encoder.codes, pool.stream, mean, std, batch_size, device, w, gallery,
                                   bad_images=bad)
    else:
        q_codes = image_codes(encoder, pool.images[query], mean, std, batch_size, device)
        g_codes = image_codes(encoder, pool.images[gallery], mean, std, batch_size, device)
    score = mean_average_precision if ranking == "hamming" else paper_mean_average_precision
    value = score(q_codes, pool.labels[query], g_codes, pool.labels[gallery], topk=topk, count_empty=count_empty)
    described = pool.describe()
    return {
        "map": value,
        "metric": "mAP@all" if topk is None else f"mAP@{topk}",
        "topk": len(gallery) if topk is None else topk,
        "num_queries": described["num_queries"],
        "gallery_size": described["gallery_size"],
        "bits": int(q_codes.shape[1]),
        "codes": code_rule(encoder),
        "ranking": ranking,
        "ties": "gallery-index" if ranking == "hamming" else "numpy-default-argsort",
        "empty_queries": "zero" if count_empty else "excluded",
        "split": _split_name(data, pool),
        "relevance": "shares a label" if multi_label else "same label",
        "queries_per_class": described["queries_per_class"],
        "split_seed": described["split_seed"],
        "dataset": data,
        "amp": precision.amp,
        **bad_images_result(bad),
        "seconds": round(time.perf_counter() - start, 2),
    }


def _split_name(data: str, pool) -> str:
    """"paper" for the paper's splits (CIFAR-10, and FLICKR-25K at its full size), else "analogue"."""
    if data.lower() == "cifar10":
        return "paper"
    if data.lower() == "flickr25k":
        sizes = (len(pool.split["query"]), len(pool.split["train"]))
        return "paper" if sizes == (PAPER_QUERIES, PAPER_TRAIN) else "analogue"
    return "analogue"
