"""Hamming-ranking retrieval: mean average precision of binary codes.

Ranking rule: the gallery is ordered by Hamming distance to the query, and items at
the same distance by their gallery index (lower index first). The order is therefore
fully determined by the inputs, and so is the score.

Relevance: with integer labels an item is relevant when it has the query's label; with
multi-hot labels [N, C] when it shares at least one label with the query.

AP@R of one query (R = ``topk``, or the whole gallery) is
``(1 / #relevant in the top R) * sum over relevant ranks r <= R of precision@r``.
Queries with no relevant item in the top R are left out of the mean (as the paper's
code does) unless ``count_empty=True``, which counts them as 0.

Numerics: each query's precision terms are added in rank order, and the mean over
queries is an exactly rounded sum (``math.fsum``), so the value does not depend on
chunking or threading and equals a plain loop over the sorted gallery.

How it is fast: codes are packed into 64-bit words and distances come from XOR and
popcount. With numba installed (a dependency), a compiled kernel ranks each query by a
counting sort over the ``bits + 1`` possible distances (``hamming_kernel.py``): O(gallery)
work per query, no comparison sort, queries in parallel. Without it, a numpy path does
the same with sorting: each (query, item) pair gets one unique integer key
``(distance, index, relevant)`` packed into 32 bits where it fits, so one plain sort
per query gives the ranking with ties already broken by index and the relevance bit
already in place; no float score matrix, no argsort and no gather are needed. Queries
are processed in chunks (of one class each with class-id labels, so the relevance bits
are built once per chunk) sized from a memory budget, on ``torch.get_num_threads()``
threads; numpy releases the GIL in the heavy steps.
"""

from __future__ import annotations

import math
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from nacvae.checks import check_int
from nacvae.errors import ConfigError, DataError
from nacvae.progress import bar

__all__ = ["hamming_distances", "mean_average_precision", "pack_codes"]

# Working memory for all chunks in flight together.
MEMORY_BUDGET_BYTES = 256 * 2**20
# Larger chunks stop paying off once a chunk falls out of cache.
_MAX_PAIRS_PER_CHUNK = 2**20
# Queries per call of the compiled kernel (calls are split only so that progress can show).
_KERNEL_BLOCK = 512
_LITTLE_ENDIAN = sys.byteorder == "little"

# Keys wider than this use uint64.
_KEY32_MAX_BITS = 32
_BYTE_COUNTS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount_table(words: np.ndarray) -> np.ndarray:
    """Popcount of uint64 words through a byte table (numpy < 2.0 has no bitwise_count)."""
    per_byte = _BYTE_COUNTS[words.view(np.uint8)].reshape(words.shape + (8,))
    return per_byte.sum(axis=-1, dtype=np.uint8)


_popcount = getattr(np, "bitwise_count", _popcount_table)


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def code_bits(codes, name: str = "codes") -> np.ndarray:
    """Codes [N, D] (bool, {0,1} or +-1, tensor or array) as a bool array (x > 0)."""
    a = _as_numpy(codes)
    if a.ndim != 2:
        raise DataError(f"{name} must have shape [N, D], got shape {tuple(a.shape)}.")
    if a.shape[1] == 0:
        raise DataError(f"{name} must have at least one bit per code.")
    if a.dtype == np.bool_:
        return a
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise DataError(f"{name} must be numeric or boolean, got dtype {a.dtype}.")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise DataError(f"{name} contains non-finite values.")
    return a > 0


def pack_codes(codes) -> np.ndarray:
    """Pack codes [N, D] into a numpy uint64 array [N, ceil(D / 64)].

    Bit d of a code goes to word d // 64; unused bits of the last word are zero, so
    XOR + popcount of two packed codes is their Hamming distance.
    """
    bits = code_bits(codes)
    n, d = bits.shape
    packed = np.packbits(bits, axis=1, bitorder="little")
    nbytes = -(-d // 64) * 8
    if packed.shape[1] < nbytes:
        packed = np.concatenate(
            [packed, np.zeros((n, nbytes - packed.shape[1]), dtype=np.uint8)], axis=1
        )
    return np.ascontiguousarray(packed).view(np.uint64)


def _distance_dtype(num_bits: int):
    if num_bits <= np.iinfo(np.uint8).max:
        return np.uint8
    if num_bits <= np.iinfo(np.uint16).max:
        return np.uint16
    return np.uint32


def _distances(query_words: np.ndarray, gallery_words_t: np.ndarray, dtype) -> np.ndarray:
    """Hamming distances [Q, G] from packed queries [Q, W] and packed gallery [W, G]."""
    num_words, g = gallery_words_t.shape
    xor = np.empty((query_words.shape[0], g), dtype=np.uint64)
    dist = None
    for w in range(num_words):
        np.bitwise_xor(query_words[:, w : w + 1], gallery_words_t[w][None, :], out=xor)
        count = _popcount(xor)
        if dist is None:
            dist = count if count.dtype == dtype else count.astype(dtype)
        else:
            np.add(dist, count, out=dist)
    return dist


def hamming_distances(query_codes, gallery_codes) -> torch.Tensor:
    """All Hamming distances [Q, G] as an int64 tensor (dense: for small inputs)."""
    q = code_bits(query_codes, "query codes")
    g = code_bits(gallery_codes, "gallery codes")
    if q.shape[1] != g.shape[1]:
        raise DataError(f"Query codes have {q.shape[1]} bits but gallery codes have {g.shape[1]}.")
    dist = _distances(pack_codes(q), np.ascontiguousarray(pack_codes(g).T), np.uint32)
    return torch.from_numpy(dist.astype(np.int64))


class _Labels:
    """Labels in a form that makes a [Q, G] relevance matrix cheap to build."""

    def __init__(self, labels, n: int, name: str):
        a = _as_numpy(labels)
        if a.ndim == 1:
            if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
                raise DataError(f"{name} must hold integer class ids, got dtype {a.dtype}.")
            self.multi_hot = False
            self.values = a.astype(np.int64)
            self.width = None
        elif a.ndim == 2:
            if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
                raise DataError(f"{name} must be numeric multi-hot labels, got dtype {a.dtype}.")
            self.multi_hot = True
            self.width = a.shape[1]
            self.values = pack_codes(a > 0) if a.shape[1] else np.zeros((len(a), 0), np.uint64)
        else:
            raise DataError(f"{name} must have shape [N] or [N, C], got shape {tuple(a.shape)}.")
        if a.shape[0] != n:
            raise DataError(f"{name} has {a.shape[0]} entries but there are {n} codes.")


def _multi_hot_relevance(query_words: np.ndarray, gallery_words_t: np.ndarray) -> np.ndarray:
    """[Q, G] bool: does the query share a label with the item (packed multi-hot)."""
    rel = np.zeros((query_words.shape[0], gallery_words_t.shape[-1]), dtype=bool)
    for w in range(gallery_words_t.shape[0]):
        rel |= (gallery_words_t[w][None, :] & query_words[:, w : w + 1]) != 0
    return rel


def _check_count(value, name: str, upper: int | None = None) -> None:
    check_int(name, value, prefix="")
    if upper is not None and value > upper:
        raise ConfigError(f"{name} is {value} but the gallery holds only {upper} items.")


def check_retrieval_inputs(query_codes, query_labels, gallery_codes, gallery_labels, topk: int | None):
    """Validated (query bits, gallery bits, query labels, gallery labels, depth R)."""
    q_bits = code_bits(query_codes, "query codes")
    g_bits = code_bits(gallery_codes, "gallery codes")
    num_q, num_bits = q_bits.shape
    num_g = g_bits.shape[0]
    if num_q == 0 or num_g == 0:
        raise DataError("Retrieval needs at least one query and one gallery item.")
    if g_bits.shape[1] != num_bits:
        raise DataError(f"Query codes have {num_bits} bits but gallery codes have {g_bits.shape[1]}.")
    q_lab = _Labels(query_labels, num_q, "query labels")
    g_lab = _Labels(gallery_labels, num_g, "gallery labels")
    if q_lab.multi_hot != g_lab.multi_hot or q_lab.width != g_lab.width:
        raise DataError(
            "Query and gallery labels must both be class ids, or both multi-hot with the same number of labels."
        )
    depth = num_g if topk is None else topk
    _check_count(depth, "topk", upper=num_g)
    return q_bits, g_bits, q_lab, g_lab, depth


def _hamming_kernel():
    """The compiled kernel's module, imported when first asked for: importing numba starts its
    threading runtime, which changes torch's CPU results in multi-process training, so a
    process that only trains (pretraining's online monitor ranks with the numpy path) never
    loads it."""
    from nacvae.eval import hamming_kernel

    return hamming_kernel


def mean_average_precision(
    query_codes,
    query_labels,
    gallery_codes,
    gallery_labels,
    topk: int | None = None,
    count_empty: bool = False,
    chunk_size: int | None = None,
    backend: str = "auto",
) -> float:
    """mAP@topk of Hamming ranking (see the module docstring for the exact rules).

    Args:
        query_codes, gallery_codes: [N, D] bool, {0,1} or +-1 (x > 0 is a one bit),
            torch tensors or numpy arrays.
        query_labels, gallery_labels: [N] integer class ids, or [N, C] multi-hot.
        topk: R in AP@R; None ranks the whole gallery (mAP@all).
        count_empty: count queries without a relevant item in the top R as AP 0
            instead of leaving them out. If all are left out the result is 0.0.
        chunk_size: queries per chunk of the numpy path; None picks it from
            ``MEMORY_BUDGET_BYTES``.
        backend: "numba" (the compiled counting-sort kernel), "numpy" (sorting), or
            "auto" (numba when it is installed). All give the same value.
    """
    q_bits, g_bits, q_lab, g_lab, depth = check_retrieval_inputs(
        query_codes, query_labels, gallery_codes, gallery_labels, topk)
    num_q, num_bits = q_bits.shape
    num_g = g_bits.shape[0]
    if chunk_size is not None:
        _check_count(chunk_size, "chunk_size")
    if backend not in ("auto", "numba", "numpy"):
        raise ConfigError(f"backend must be 'auto', 'numba' or 'numpy', got {backend!r}.")
    hamming_kernel = None if backend == "numpy" else _hamming_kernel()
    if backend == "numba" and not hamming_kernel.available():
        raise ConfigError("backend 'numba' was asked for but numba is not installed (pip install numba).")
    workers = max(1, torch.get_num_threads())

    if hamming_kernel is not None and hamming_kernel.available():
        if g_lab.multi_hot:
            q_lab_words, g_lab_words = q_lab.values, g_lab.values
        else:
            q_lab_words, g_lab_words = q_lab.values[:, None], g_lab.values[:, None]
        q_words, g_words = pack_codes(q_bits), pack_codes(g_bits)
        # Blocks of queries only so that a progress bar can move; each block still keeps
        # every worker busy.
        block = max(_KERNEL_BLOCK, -(-num_q // 100))
        parts = [
            hamming_kernel.precision_sums(q_words[s : s + block], g_words, q_lab_words[s : s + block], g_lab_words,
                                          g_lab.multi_hot, depth, num_bits, workers)
            for s in bar(range(0, num_q, block), desc="ranking", unit="block")
        ]
        sums = np.concatenate([p[0] for p in parts]) if parts else np.empty(0)
        found = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, dtype=np.int64)
        return _mean_ap(sums, found, count_empty)

    q_words = pack_codes(q_bits)
    g_words_t = np.ascontiguousarray(pack_codes(g_bits).T)
    g_lab_t = g_lab.values if not g_lab.multi_hot else np.ascontiguousarray(g_lab.values.T)

    index_bits = max(1, (num_g - 1).bit_length())
    key_bits = num_bits.bit_length() + index_bits + 1
    if key_bits > 64:
        raise DataError("The gallery and code length are too large to rank with 64-bit keys.")
    key_dtype = np.uint32 if key_bits <= _KEY32_MAX_BITS else np.uint64
    index_part = np.arange(num_g, dtype=key_dtype) << key_dtype(1)
    dist_shift = key_dtype(index_bits + 1)
    dist_dtype = _distance_dtype(num_bits)

    if chunk_size is None:
        bytes_per_pair = 8 + 2 * np.dtype(key_dtype).itemsize + 4
        chunk_size = MEMORY_BUDGET_BYTES // (workers * bytes_per_pair * num_g)
        chunk_size = max(1, min(chunk_size, _MAX_PAIRS_PER_CHUNK // num_g))

    # With class ids, queries of one class share their relevance row: chunks hold one
    # class each, and the row (with the index bits) is built once per chunk.
    chunks = []
    if g_lab.multi_hot:
        for s in range(0, num_q, chunk_size):
            chunks.append((np.arange(s, min(s + chunk_size, num_q)), None))
    else:
        by_label = np.argsort(q_lab.values, kind="stable")
        cuts = np.flatnonzero(np.diff(q_lab.values[by_label])) + 1
        for group in np.split(by_label, cuts):
            for s in range(0, len(group), chunk_size):
                chunks.append((group[s : s + chunk_size], q_lab.values[group[0]]))

    def run_chunk(chunk) -> tuple[np.ndarray, np.ndarray]:
        rows, label = chunk
        dist = _distances(q_words[rows], g_words_t, dist_dtype)
        keys = np.left_shift(dist, dist_shift, dtype=key_dtype)
        del dist
        if label is None:
            keys |= index_part
            keys |= _multi_hot_relevance(q_lab.values[rows], g_lab_t)
        else:
            keys |= index_part | (g_lab.values == label)
        # Keys are unique, so any sort gives the one (distance, index) order.
        if depth < num_g:
            keys = np.partition(keys, depth - 1, axis=1)[:, :depth]
        keys.sort(axis=1)
        # The relevance bit is bit 0 of each key: read its byte as bool, since
        # nonzero() is much faster on bool than on wider integers.
        first = 0 if _LITTLE_ENDIAN else keys.itemsize - 1
        low_byte = keys.view(np.uint8)[:, first :: keys.itemsize]
        return _precision_sums((low_byte & np.uint8(1)).view(np.bool_))

    workers = min(workers, len(chunks))
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(bar(pool.map(run_chunk, chunks), total=len(chunks), desc="ranking", unit="chunk"))
    else:
        parts = [run_chunk(c) for c in bar(chunks, desc="ranking", unit="chunk")]
    sums = np.empty(num_q)
    found = np.empty(num_q, dtype=np.int64)
    for (rows, _), (chunk_sums, chunk_found) in zip(chunks, parts):
        sums[rows] = chunk_sums
        found[rows] = chunk_found
    return _mean_ap(sums, found, count_empty)


def _mean_ap(sums: np.ndarray, found: np.ndarray, count_empty: bool) -> float:
    num_q = len(sums)
    nonempty = found > 0
    ap = sums[nonempty] / found[nonempty]
    denominator = num_q if count_empty else int(nonempty.sum())
    if denominator == 0:
        return 0.0
    return math.fsum(ap.tolist()) / denominator


def _precision_sums(relevant_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a ranked 0/1 matrix: (sum of precision@r over relevant r, #relevant)."""
    num_rows, depth = relevant_sorted.shape
    flat = np.flatnonzero(relevant_sorted)
    rows = flat // depth
    ranks = flat - rows * depth + 1
    found = np.bincount(rows, minlength=num_rows)
    first = np.cumsum(found) - found
    hits = np.arange(1, flat.size + 1) - np.repeat(first, found)
    # bincount adds the weights one by one in rank order.
    sums = np.bincount(rows, weights=hits / ranks, minlength=num_rows)
    return sums, found
