"""The paper code's {0,1} inner-product ranking against brute-force re-computations."""

import numpy as np
import pytest

from nacvae.eval.paper_ranking import paper_mean_average_precision
from nacvae.eval.retrieval import mean_average_precision


def authors_procedure(q_codes, q_labels, g_codes, g_labels, topk=None):
    """The published procedure, step by step: {0,1} float codes, sim = G Q^T, numpy's
    default argsort of -sim per column, AP over the top R, empty queries left out."""
    q = (np.asarray(q_codes) > 0).astype(np.float32)
    g = (np.asarray(g_codes) > 0).astype(np.float32)
    q_labels, g_labels = np.asarray(q_labels), np.asarray(g_labels)
    if q_labels.ndim == 1:  # class ids as one-hot rows, as that code expects
        classes = max(q_labels.max(), g_labels.max()) + 1
        q_labels, g_labels = np.eye(classes)[q_labels], np.eye(classes)[g_labels]
    r = len(g) if topk is None else topk
    ids = np.argsort(-(g @ q.T), axis=0)
    aps = []
    for i in range(len(q)):
        label = q_labels[i].copy()
        label[label == 0] = -1
        match = np.sum(g_labels[ids[:r, i]] == label, axis=1) > 0
        if match.sum():
            precision = np.cumsum(match) / np.arange(1, r + 1)
            aps.append(float(np.sum(precision * match) / match.sum()))
    return float(np.mean(aps))


def test_hand_example_differs_from_hamming():
    # Query 1100. A = 1111 shares two ones (Hamming 2), B = 1000 one (Hamming 1), C = 0011
    # none (Hamming 4): inner products rank A, B, C; Hamming distances B, A, C.
    q = np.array([[1, 1, 0, 0]])
    g = np.array([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 1, 1]])
    labels_q, labels_g = np.array([0]), np.array([1, 0, 1])  # only B is relevant
    assert paper_mean_average_precision(q, labels_q, g, labels_g) == pytest.approx(1 / 2)  # B at rank 2
    assert mean_average_precision(q, labels_q, g, labels_g) == 1.0  # B at rank 1 by Hamming


def test_without_ties_matches_a_plain_python_sort():
    # Gallery item j has its first j bits on and the query all 16: inner products 0..15 are
    # distinct, so the ranking is unique and does not depend on any sort's tie handling.
    rng = np.random.default_rng(0)
    g = np.tril(np.ones((16, 16)), k=-1)[:, ::-1].copy()
    g = g[rng.permutation(16)]
    q = np.ones((1, 16))
    labels_g = rng.integers(0, 3, size=16)
    labels_q = np.array([labels_g[0]])
    sims = [int(row.sum()) for row in g]
    order = sorted(range(16), key=lambda j: -sims[j])
    hits, total = 0, 0.0
    for rank, j in enumerate(order, start=1):
        if labels_g[j] == labels_q[0]:
            hits += 1
            total += hits / rank
    assert paper_mean_average_precision(q, labels_q, g, labels_g) == pytest.approx(total / hits, abs=1e-15)


@pytest.mark.parametrize("multi_hot", [False, True])
@pytest.mark.parametrize("topk", [None, 25])
def test_matches_the_authors_procedure_ties_included(multi_hot, topk):
    # 6-bit codes give only 7 scores for 300 items: almost every item is tied with others.
    rng = np.random.default_rng(1)
    q = rng.integers(0, 2, size=(40, 6))
    g = rng.integers(0, 2, size=(300, 6))
    if multi_hot:
        lq, lg = rng.integers(0, 2, size=(40, 5)), rng.integers(0, 2, size=(300, 5))
        lq[0] = 0  # a query with no label has no relevant item: left out
    else:
        lq, lg = rng.integers(0, 4, size=40), rng.integers(0, 4, size=300)
    expected = authors_procedure(q, lq, g, lg, topk)
    got = paper_mean_average_precision(q, lq, g, lg, topk=topk)
    assert got == pytest.approx(expected, rel=1e-12)
    # Each query's column is sorted on its own, so chunking cannot change the ranking.
    assert paper_mean_average_precision(q, lq, g, lg, topk=topk, chunk_size=1) == got


def test_accepts_the_same_code_forms_as_hamming_ranking():
    rng = np.random.default_rng(2)
    bits_q, bits_g = rng.integers(0, 2, size=(10, 8)), rng.integers(0, 2, size=(50, 8))
    lq, lg = rng.integers(0, 3, size=10), rng.integers(0, 3, size=50)
    as_bool = paper_mean_average_precision(bits_q.astype(bool), lq, bits_g.astype(bool), lg)
    as_signs = paper_mean_average_precision(2.0 * bits_q - 1, lq, 2.0 * bits_g - 1, lg)
    assert as_bool == as_signs == paper_mean_average_precision(bits_q, lq, bits_g, lg)
