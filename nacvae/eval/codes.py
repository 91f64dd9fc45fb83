"""Statistics of binary activation codes (the paper's proxy for expressivity).

Far-apart codes for different images mean the images fall in different linear regions
of the encoder; these numbers summarise how spread out a set of codes is.
"""

from __future__ import annotations

import numpy as np
import torch

from nacvae.checks import check_int
from nacvae.errors import DataError
from nacvae.eval.retrieval import code_bits, pack_codes

__all__ = ["code_statistics"]

_PAIRS_PER_CHUNK = 2**16


def code_statistics(
    codes, max_pairs: int | None = None, generator: torch.Generator | None = None
) -> dict:
    """Summary statistics of codes [N, D] (bool, {0,1} or +-1; x > 0 is a one bit).

    Returns a dict with
        num_codes, code_length: N and D;
        distinct_codes, distinct_fraction: number of different codes, and that over N;
        mean_pairwise_hamming: mean Hamming distance over all pairs i < j of different
            images (pairs whose codes happen to be equal count with distance 0); NaN
            when N < 2. It is exact, from per-bit counts:
            sum_d n1_d * (N - n1_d) / (N * (N - 1) / 2);
        pairs: "all" for that exact value, or "sampled" when ``max_pairs`` is given and
            smaller than the number of pairs: then it is the mean over ``max_pairs``
            uniformly random pairs i != j, drawn with replacement with ``generator``
            (an unbiased estimate, for matching a sampled protocol);
        bit_balance: mean over bits of the fraction of ones p_d;
        mean_abs_bit_bias: mean over bits of |p_d - 0.5|.
    """
    bits = code_bits(codes)
    n, d = bits.shape
    if n == 0:
        raise DataError("Code statistics need at least one code.")
    check_int("max_pairs", max_pairs, optional=True, prefix="")

    ones = bits.sum(axis=0, dtype=np.int64)
    p = ones / n
    distinct = len(np.unique(pack_codes(bits), axis=0))
    num_pairs = n * (n - 1) // 2

    if n < 2:
        mean_hamming, pairs = float("nan"), "all"
    elif max_pairs is None or num_pairs <= max_pairs:
        total = sum(int(k) * (n - int(k)) for k in ones)  # exact integer
        mean_hamming, pairs = total / num_pairs, "all"
    else:
        i = torch.randint(0, n, (max_pairs,), generator=generator)
        # j uniform over the other n - 1 indices makes {i, j} a uniform random pair.
        j = torch.randint(0, n - 1, (max_pairs,), generator=generator)
        j = j + (j >= i).long()
        i, j = i.numpy(), j.numpy()
        total = 0
        for s in range(0, max_pairs, _PAIRS_PER_CHUNK):
            part = slice(s, s + _PAIRS_PER_CHUNK)
            total += int((bits[i[part]] != bits[j[part]]).sum(dtype=np.int64))
        mean_hamming, pairs = total / max_pairs, "sampled"

    return {
        "num_codes": int(n),
        "code_length": int(d),
        "distinct_codes": int(distinct),
        "distinct_fraction": distinct / n,
        "mean_pairwise_hamming": mean_hamming,
        "pairs": pairs,
        "bit_balance": float(p.mean()),
        "mean_abs_bit_bias": float(np.abs(p - 0.5).mean()),
    }
