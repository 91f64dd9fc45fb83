import math

import numpy as np
import pytest
import torch

from nacvae.errors import ConfigError, DataError
from nacvae.eval import hamming_kernel, retrieval
from nacvae.eval.retrieval import hamming_distances, mean_average_precision, pack_codes


def brute_force_map(q_codes, q_labels, g_codes, g_labels, topk=None, count_empty=False):
    """Plain-python reference: sort by (distance, index), accumulate AP@R in rank order."""
    q_codes, g_codes = np.asarray(q_codes) > 0, np.asarray(g_codes) > 0
    q_labels, g_labels = np.asarray(q_labels), np.asarray(g_labels)
    depth = len(g_codes) if topk is None else topk
    aps = []
    for qi in range(len(q_codes)):
        dist = (g_codes != q_codes[qi]).sum(axis=1).tolist()
        order = sorted(range(len(g_codes)), key=lambda j: (dist[j], j))[:depth]
        if q_labels.ndim == 1:
            rel = [g_labels[j] == q_labels[qi] for j in order]
        else:
            rel = [bool(np.any((g_labels[j] > 0) & (q_labels[qi] > 0))) for j in order]
        hits, total = 0, 0.0
        for r, is_rel in enumerate(rel, start=1):
            if is_rel:
                hits += 1
                total += hits / r
        if hits:
            aps.append(total / hits)
        elif count_empty:
            aps.append(0.0)
    denominator = len(q_codes) if count_empty else len(aps)
    return math.fsum(aps) / denominator if denominator else 0.0


# Both ranking paths must give bit-identical values.
BACKENDS = ["numba", "numpy"]


def random_case(rng, num_q, num_g, bits, classes, multi_label=False):
    q = rng.integers(0, 2, (num_q, bits)).astype(bool)
    g = rng.integers(0, 2, (num_g, bits)).astype(bool)
    if multi_label:
        ql = (rng.random((num_q, classes)) < 0.25).astype(np.int64)
        gl = (rng.random((num_g, classes)) < 0.25).astype(np.int64)
    else:
        ql = rng.integers(0, classes, num_q)
        gl = rng.integers(0, classes, num_g)
    return q, ql, g, gl


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_example(backend):
    g = np.array([[0, 0], [1, 1], [0, 1], [0, 0]])
    gl = np.array([1, 0, 1, 0])
    q = np.array([[0, 0], [1, 1]])
    ql = np.array([1, 0])
    # Query 0: order g0 g3 g2 g1 -> relevance 1 0 1 0 -> AP = (1 + 2/3) / 2 = 5/6.
    # Query 1: order g1 g2 g0 g3 -> relevance 1 0 0 1 -> AP = (1 + 2/4) / 2 = 3/4.
    assert mean_average_precision(q, ql, g, gl, backend=backend) == pytest.approx(19 / 24, rel=1e-15)
    assert mean_average_precision(q, ql, g, gl, topk=1, backend=backend) == 1.0
    assert mean_average_precision(q, ql, g, gl, topk=3, backend=backend) == pytest.approx((5 / 6 + 1) / 2, rel=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_are_broken_by_gallery_index(backend):
    g = np.zeros((2, 3))
    q = np.zeros((1, 3))
    assert mean_average_precision(q, [1], g, [0, 1], backend=backend) == 0.5
    assert mean_average_precision(q, [1], g, [1, 0], backend=backend) == 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_queries_left_out_or_counted_as_zero(backend):
    g = np.array([[0, 0], [1, 1], [0, 1]])
    gl = np.array([0, 1, 0])
    q = np.array([[0, 0], [1, 1]])
    ql = np.array([0, 7])  # no item of class 7
    assert mean_average_precision(q, ql, g, gl, backend=backend) == 1.0
    assert mean_average_precision(q, ql, g, gl, count_empty=True, backend=backend) == 0.5
    # Relevant item exists but falls outside the top 1.
    assert mean_average_precision(q[1:], [0], g, gl, topk=1, backend=backend) == 0.0
    assert mean_average_precision(q[1:], [0], g, gl, topk=2, backend=backend) == 0.5


@pytest.mark.parametrize("bits", [4, 13, 64, 70, 300])
@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_brute_force(bits, multi_label, backend):
    rng = np.random.default_rng(bits + 100 * multi_label)
    q, ql, g, gl = random_case(rng, 23, 57, bits, classes=4, multi_label=multi_label)
    for topk in (None, 1, 10, 57):
        for count_empty in (False, True):
            expected = brute_force_map(q, ql, g, gl, topk, count_empty)
            got = mean_average_precision(q, ql, g, gl, topk=topk, count_empty=count_empty, backend=backend)
            assert got == expected


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 100])
def test_chunking_does_not_change_the_value(chunk_size):
    rng = np.random.default_rng(5)
    q, ql, g, gl = random_case(rng, 31, 40, 4, classes=3)
    expected = brute_force_map(q, ql, g, gl)
    assert mean_average_precision(q, ql, g, gl, chunk_size=chunk_size, backend="numpy") == expected
    expected = brute_force_map(q, ql, g, gl, topk=9, count_empty=True)
    got = mean_average_precision(q, ql, g, gl, topk=9, count_empty=True, chunk_size=chunk_size, backend="numpy")
    assert got == expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_threads_do_not_change_the_value(backend):
    rng = np.random.default_rng(6)
    q, ql, g, gl = random_case(rng, 40, 300, 8, classes=5)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = mean_average_precision(q, ql, g, gl, chunk_size=3, backend=backend)
        torch.set_num_threads(2)
        two = mean_average_precision(q, ql, g, gl, chunk_size=3, backend=backend)
    finally:
        torch.set_num_threads(old)
    assert one == two == brute_force_map(q, ql, g, gl)


def test_torch_thread_count_is_left_alone():
    rng = np.random.default_rng(7)
    q, ql, g, gl = random_case(rng, 6, 50, 8, classes=3)
    old = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            mean_average_precision(q, ql, g, gl)
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(old)


def test_64_bit_keys(monkeypatch):
    rng = np.random.default_rng(9)
    q, ql, g, gl = random_case(rng, 15, 33, 6, classes=3, multi_label=False)
    expected = brute_force_map(q, ql, g, gl)
    monkeypatch.setattr(retrieval, "_KEY32_MAX_BITS", 0)
    assert mean_average_precision(q, ql, g, gl, backend="numpy") == expected
    assert mean_average_precision(q, ql, g, gl, topk=5, backend="numpy") == brute_force_map(q, ql, g, gl, topk=5)


def test_auto_backend_is_the_compiled_kernel(monkeypatch):
    assert hamming_kernel.available()
    calls = []
    original = hamming_kernel.precision_sums
    monkeypatch.setattr(hamming_kernel, "precision_sums", lambda *a: calls.append(1) or original(*a))
    rng = np.random.default_rng(11)
    q, ql, g, gl = random_case(rng, 5, 9, 8, classes=2)
    assert mean_average_precision(q, ql, g, gl) == brute_force_map(q, ql, g, gl)
    assert calls == [1]


def test_popcount_table_matches_numpy():
    words = np.random.default_rng(10).integers(0, 2**63, (7, 3), dtype=np.uint64)
    words = words * np.uint64(2) + np.uint64(1)  # use the top and bottom bits too
    expected = np.array([[bin(int(w)).count("1") for w in row] for row in words])
    assert np.array_equal(retrieval._popcount_table(words), expected)
    assert np.array_equal(retrieval._popcount(words), expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_input_forms_are_equivalent(backend):
    rng = np.random.default_rng(7)
    q, ql, g, gl = random_case(rng, 12, 30, 9, classes=3)
    reference = mean_average_precision(q, ql, g, gl, backend=backend)
    signs = lambda b: np.where(b, 1.0, -1.0)
    assert mean_average_precision(signs(q), ql, signs(g), gl, backend=backend) == reference
    assert mean_average_precision(torch.from_numpy(q), torch.from_numpy(ql),
                                  torch.from_numpy(g.astype(np.int64)), torch.from_numpy(gl), backend=backend) == reference
    # Single labels as one-hot rows give the same relevance.
    one_hot = lambda y: np.eye(3, dtype=np.int64)[y]
    assert mean_average_precision(q, one_hot(ql), g, one_hot(gl), backend=backend) == reference


def test_hamming_distances_and_packing():
    rng = np.random.default_rng(8)
    q = rng.integers(0, 2, (5, 77)).astype(bool)
    g = rng.integers(0, 2, (9, 77)).astype(bool)
    expected = (q[:, None, :] != g[None, :, :]).sum(-1)
    dist = hamming_distances(q, g)
    assert dist.dtype == torch.int64
    assert torch.equal(dist, torch.from_numpy(expected))
    packed = pack_codes(q)
    assert packed.dtype == np.uint64 and packed.shape == (5, 2)


@pytest.mark.parametrize("topk", [0, -1, 11, 2.5, True])
def test_bad_topk(topk):
    q = np.zeros((2, 4))
    g = np.zeros((10, 4))
    with pytest.raises(ConfigError):
        mean_average_precision(q, [0, 1], g, np.zeros(10, dtype=int), topk=topk)


def test_bad_inputs():
    q = np.zeros((2, 4))
    g = np.zeros((3, 4))
    with pytest.raises(ConfigError):
        mean_average_precision(q, [0, 1], g, [0, 1, 0], chunk_size=0)
    with pytest.raises(ConfigError):
        mean_average_precision(q, [0, 1], g, [0, 1, 0], backend="cuda")
    with pytest.raises(DataError):
        mean_average_precision(q, [0, 1], np.zeros((3, 5)), [0, 1, 0])
    with pytest.raises(DataError):
        mean_average_precision(q, [0, 1], g, [0, 1])
    with pytest.raises(DataError):
        mean_average_precision(q, [0, 1], g, np.zeros((3, 2)))
    with pytest.raises(DataError):
        mean_average_precision(q, [0.5, 1.0], g, [0.0, 1.0, 0.0])
    with pytest.raises(DataError):
        mean_average_precision(np.full((2, 4), np.nan), [0, 1], g, [0, 1, 0])


@pytest.mark.skipif(not hamming_kernel.available(), reason="numba is not installed")
def test_kernel_blocks_give_the_whole_result():
    """The compiled kernel ranks queries in blocks (for the progress bar): more queries
    than one block must give what the numpy path gives on all of them at once."""
    g = torch.Generator().manual_seed(5)
    nq = 2 * retrieval._KERNEL_BLOCK + 37
    q = torch.rand(nq, 24, generator=g) > 0.5
    gal = torch.rand(300, 24, generator=g) > 0.5
    ql = torch.randint(0, 4, (nq,), generator=g)
    gl = torch.randint(0, 4, (300,), generator=g)
    for topk, count_empty in ((None, False), (7, True)):
        kernel = mean_average_precision(q, ql, gal, gl, topk=topk, count_empty=count_empty, backend="numba")
        numpy = mean_average_precision(q, ql, gal, gl, topk=topk, count_empty=count_empty, backend="numpy")
        assert kernel == pytest.approx(numpy, rel=1e-12)
