"""Compiled per-query AP kernel for Hamming ranking (numba).

Hamming distances take only ``bits + 1`` values, so a query's ranking is a counting
sort, and only the relevant items' ranks are needed. One pass over the gallery in
index order computes each distance (XOR + popcount of packed words) and counts items
per distance; an item's count-so-far is its place among equal distances, i.e. the tie
broken by gallery index. After prefix sums, rank = first rank of its distance + place.
The relevant items are then counting-sorted by distance into rank order and AP is
summed over them: the same additions, in the same order, as a loop over the sorted
gallery, so the value is identical to the numpy path's. Work per query is
O(gallery + bits) with O(gallery) scratch, and queries run in parallel.

The compiled kernel is cached on disk where numba can write (beside this file, or in the
user's cache folder); where neither is writable (a read-only install and HOME) it is cached
in a private folder under the temporary directory, else compiled anew in each process.
"""

from __future__ import annotations

import os
import stat
import tempfile

import numpy as np

try:
    import numba
    from numba import njit, prange, types
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - exercised only where numba is not installed
    numba = None

__all__ = ["available", "precision_sums"]


def available() -> bool:
    return numba is not None


def _private_temp_dir() -> str | None:
    """This user's own cache folder under the temporary directory (None: there is none).
    One that someone else created or can write is refused: numba loads pickles from it."""
    path = os.path.join(tempfile.gettempdir(), f"nacvae-numba-{os.getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
            path = tempfile.mkdtemp(prefix="nacvae-numba-")
        tempfile.TemporaryFile(dir=path).close()  # what numba's own check does
    except OSError:
        return None
    return path


def _jit(fn, **options):
    """``njit(cache=True)`` where some cache folder is writable, else ``njit`` without one.

    numba looks for a writable cache folder when the function is decorated, and without
    one raises "cannot cache function ...: no locator available"; NUMBA_CACHE_DIR
    (numba.config.CACHE_DIR) is set to the temporary folder only while decorating.
    """
    try:
        return njit(cache=True, **options)(fn)
    except RuntimeError as exc:
        if "no locator available" not in str(exc):
            raise
    folder = _private_temp_dir()
    if folder is not None:
        saved = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = folder
        try:
            return njit(cache=True, **options)(fn)
        except RuntimeError:
            pass
        finally:
            numba.config.CACHE_DIR = saved
    return njit(cache=False, **options)(fn)


if numba is not None:

    @intrinsic
    def _popcount(typingctx, word):
        """LLVM's ctpop: one POPCNT instruction where the CPU has it."""
        if word != types.uint64:
            return None

        def codegen(context, builder, signature, args):
            return builder.ctpop(args[0])

        return types.uint64(types.uint64), codegen

    def _kernel(q_words, g_words, q_labels, g_labels, multi_hot, depth, num_bits, sums, found):
        num_q, num_w = q_words.shape
        num_g = g_words.shape[0]
        num_l = q_labels.shape[1]
        for i in prange(num_q):
            # Pass 1, in gallery order: each item's distance and its place among the
            # earlier items at that distance (the histogram count so far); relevant
            # items append both to a list, so the list is in gallery order.
            counts = np.zeros(num_bits + 1, dtype=np.int64)
            rel_dist = np.empty(num_g, dtype=np.int64)
            rel_place = np.empty(num_g, dtype=np.int64)
            num_rel = 0
            for j in range(num_g):
                d = 0
                for w in range(num_w):
                    d += _popcount(q_words[i, w] ^ g_words[j, w])
                if multi_hot:
                    hit = False
                    for w in range(num_l):
                        if q_labels[i, w] & g_labels[j, w]:
                            hit = True
                            break
                else:
                    hit = q_labels[i, 0] == g_labels[j, 0]
                # Written for every item, kept only when hit advances num_rel.
                rel_dist[num_rel] = d
                rel_place[num_rel] = counts[d]
                counts[d] += 1
                num_rel += hit
            # First rank of each distance, over all items and over relevant ones.
            rel_counts = np.zeros(num_bits + 1, dtype=np.int64)
            for k in range(num_rel):
                rel_counts[rel_dist[k]] += 1
            start = 0
            rel_start = 0
            for b in range(num_bits + 1):
                c = counts[b]
                counts[b] = start
                start += c
                c = rel_counts[b]
                rel_counts[b] = rel_start
                rel_start += c
            # Ranks of the relevant items, put in rank order by a stable counting sort
            # on distance (equal distances keep gallery order: ties by index).
            rel_rank = np.empty(num_rel, dtype=np.int64)
            for k in range(num_rel):
                d = rel_dist[k]
                rel_rank[rel_counts[d]] = counts[d] + rel_place[k]
                rel_counts[d] += 1
            # The h-th relevant item (0-based) at 0-based rank p adds precision (h+1)/(p+1).
            hits = 0
            total = 0.0
            for h in range(num_rel):
                p = rel_rank[h]
                if p >= depth:
                    break
                hits = h + 1
                total += hits / (p + 1)
            sums[i] = total
            found[i] = hits

    _kernel = _jit(_kernel, nogil=True, parallel=True)


def precision_sums(q_words, g_words, q_labels, g_labels, multi_hot: bool, depth: int,
                   num_bits: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query: (sum of precision@r over relevant ranks r <= depth, #relevant there).

    ``q_words`` [Q, W] and ``g_words`` [G, W] are packed uint64 codes; labels are
    [N, 1] int64 class ids or [N, L] packed uint64 multi-hot words.
    """
    num_q = q_words.shape[0]
    sums = np.empty(num_q, dtype=np.float64)
    found = np.empty(num_q, dtype=np.int64)
    if num_q == 0:
        return sums, found
    import torch

    # numba's OpenMP layer sets the process-wide OpenMP thread count, which is also
    # torch's: put both back afterwards.
    torch_threads = torch.get_num_threads()
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        _kernel(np.ascontiguousarray(q_words), np.ascontiguousarray(g_words),
                np.ascontiguousarray(q_labels), np.ascontiguousarray(g_labels),
                bool(multi_hot), int(depth), int(num_bits), sums, found)
    finally:
        numba.set_num_threads(previous)
        torch.set_num_threads(torch_threads)
    return sums, found
