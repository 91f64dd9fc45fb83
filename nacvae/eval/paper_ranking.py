"""The ranking of the paper's published retrieval code, so numbers can sit beside its table.

The paper's code turns codes into {0,1} vectors (1 where a > 0), scores every gallery item
by the inner product with the query, ``sim = gallery @ query.T`` in float32, and ranks each
query's column with numpy's default ``argsort(-sim, axis=0)``. Two things set it apart
from Hamming ranking (``nacvae.eval.retrieval``):

- The inner product counts the one-bits two codes share and ignores shared zero-bits and
  disagreements: an item with every bit on scores at least as high as the query itself.
- Ties (frequent: there are only D + 1 scores) fall in whatever order numpy's default,
  unstable sort leaves them. That order depends on the numpy version and on the CPU's
  vector instructions, so mAP under this ranking can differ in the last digits between
  machines; the Hamming ranking is fully determined by the inputs.

This module makes exactly that call, query chunk by query chunk (each column is sorted
on its own, so chunking does not change the order), and scores the result with the same
AP rules as the Hamming ranking: relevant means the same class id or, for multi-hot
labels, a shared label; queries without a relevant item in the top R are left out unless
``count_empty``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from nacvae.eval.retrieval import (
    MEMORY_BUDGET_BYTES, _check_count, _mean_ap, _multi_hot_relevance, _precision_sums, check_retrieval_inputs,
)

__all__ = ["paper_mean_average_precision"]


def paper_mean_average_precision(query_codes, query_labels, gallery_codes, gallery_labels, topk: int | None = None,
                                 count_empty: bool = False, chunk_size: int | None = None) -> float:
    """mAP@topk with the paper code's {0,1} inner-product ranking (arguments as
    ``nacvae.eval.retrieval.mean_average_precision``)."""
    q_bits, g_bits, q_lab, g_lab, depth = check_retrieval_inputs(
        query_codes, query_labels, gallery_codes, gallery_labels, topk)
    num_q, num_g = len(q_bits), len(g_bits)
    workers = max(1, torch.get_num_threads())
    if chunk_size is None:
        # float32 scores, int64 order and a bool relevance row per (item, query) pair.
        chunk_size = max(1, MEMORY_BUDGET_BYTES // (workers * 13 * num_g))
    else:
        _check_count(chunk_size, "chunk_size")

    gallery = g_bits.astype(np.float32)
    queries = q_bits.astype(np.float32)
    g_lab_t = np.ascontiguousarray(g_lab.values.T) if g_lab.multi_hot else g_lab.values

    def run_chunk(start: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.arange(start, min(start + chunk_size, num_q))
        sim = gallery @ queries[rows].T                  # [G, c], exact small integers
        order = np.argsort(-sim, axis=0)[:depth].T       # [c, depth]: the paper code's call
        if g_lab.multi_hot:
            relevant = _multi_hot_relevance(q_lab.values[rows], g_lab_t)
        else:
            relevant = g_lab.values[None, :] == q_lab.values[rows, None]
        return _precision_sums(np.take_along_axis(relevant, order, axis=1))

    starts = list(range(0, num_q, chunk_size))
    if min(workers, len(starts)) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(starts))) as pool:
            parts = list(pool.map(run_chunk, starts))
    else:
        parts = [run_chunk(s) for s in starts]
    sums = np.concatenate([p[0] for p in parts])
    found = np.concatenate([p[1] for p in parts])
    return _mean_ap(sums, found, count_empty)
