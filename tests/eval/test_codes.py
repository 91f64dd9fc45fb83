import itertools
import math

import numpy as np
import pytest
import torch

from nacvae.errors import ConfigError, DataError
from nacvae.eval.codes import code_statistics


def brute_force(bits):
    n = len(bits)
    rows = [tuple(r) for r in bits.tolist()]
    dists = [sum(a != b for a, b in zip(rows[i], rows[j])) for i, j in itertools.combinations(range(n), 2)]
    p = bits.mean(axis=0)
    return {
        "distinct_codes": len(set(rows)),
        "mean_pairwise_hamming": sum(dists) / len(dists),
        "bit_balance": p.mean(),
        "mean_abs_bit_bias": np.abs(p - 0.5).mean(),
    }


@pytest.mark.parametrize("n,d", [(2, 1), (17, 5), (40, 3), (25, 70)])
def test_matches_brute_force(n, d):
    rng = np.random.default_rng(n * d)
    bits = rng.random((n, d)) < 0.3
    bits[1] = bits[0]  # at least one duplicate code
    stats = code_statistics(bits)
    expected = brute_force(bits)
    assert stats["num_codes"] == n and stats["code_length"] == d
    assert stats["distinct_codes"] == expected["distinct_codes"]
    assert stats["distinct_fraction"] == expected["distinct_codes"] / n
    assert stats["pairs"] == "all"
    assert stats["mean_pairwise_hamming"] == expected["mean_pairwise_hamming"]
    assert stats["bit_balance"] == pytest.approx(expected["bit_balance"], abs=1e-12)
    assert stats["mean_abs_bit_bias"] == pytest.approx(expected["mean_abs_bit_bias"], abs=1e-12)


def test_input_forms_are_equivalent():
    rng = np.random.default_rng(1)
    bits = rng.random((30, 12)) < 0.5
    reference = code_statistics(bits)
    assert code_statistics(torch.from_numpy(np.where(bits, 1.0, -1.0))) == reference
    assert code_statistics(bits.astype(np.int64)) == reference


def test_sampled_pairs_estimate():
    rng = np.random.default_rng(2)
    bits = rng.random((400, 32)) < 0.4
    exact = code_statistics(bits)["mean_pairwise_hamming"]
    stats = code_statistics(bits, max_pairs=20_000, generator=torch.Generator().manual_seed(0))
    assert stats["pairs"] == "sampled"
    assert stats["mean_pairwise_hamming"] == pytest.approx(exact, rel=0.01)
    again = code_statistics(bits, max_pairs=20_000, generator=torch.Generator().manual_seed(0))
    assert again == stats
    # Enough pairs allowed: exact.
    assert code_statistics(bits, max_pairs=400 * 399 // 2)["pairs"] == "all"


def test_edge_cases_and_errors():
    one = code_statistics(np.array([[1, 0, 1]]))
    assert one["distinct_codes"] == 1 and math.isnan(one["mean_pairwise_hamming"])
    same = code_statistics(np.ones((4, 3)))
    assert same["distinct_codes"] == 1 and same["mean_pairwise_hamming"] == 0.0
    assert same["bit_balance"] == 1.0 and same["mean_abs_bit_bias"] == 0.5
    with pytest.raises(DataError):
        code_statistics(np.zeros((0, 4)))
    with pytest.raises(DataError):
        code_statistics(np.zeros(4))
    with pytest.raises(ConfigError):
        code_statistics(np.zeros((3, 4)), max_pairs=0)
