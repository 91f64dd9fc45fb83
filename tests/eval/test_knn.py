"""The weighted k-NN core against a brute-force float64 loop and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nacvae.errors import ConfigError, DataError
from nacvae.eval.knn import RunningTopK, check_knn_options, knn_accuracy, knn_votes, ranked_classes, topk_accuracies

pytestmark = pytest.mark.usefixtures("one_thread")


def brute_votes(queries, memory, memory_labels, num_classes, k, temperature):
    """The protocol written out: cosine similarities in float64, the k largest, exp(s / tau) votes."""
    q = queries.double().numpy()
    m = memory.double().numpy()
    out = np.zeros((len(q), num_classes))
    for i in range(len(q)):
        sims = [float(q[i] @ m[j]) / (np.linalg.norm(q[i]) * np.linalg.norm(m[j])) for j in range(len(m))]
        order = sorted(range(len(m)), key=lambda j: -sims[j])[:k]
        for j in order:
            out[i, int(memory_labels[j])] += math.exp(sims[j] / temperature)
    return out


def data(n_memory=60, n_query=25, dim=6, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g)
    ml = torch.randint(classes, (n_memory,), generator=g)
    ql = torch.randint(classes, (n_query,), generator=g)
    memory = centres[ml] + 0.8 * torch.randn(n_memory, dim, generator=g)
    queries = centres[ql] + 0.8 * torch.randn(n_query, dim, generator=g)
    return queries, ql, memory, ml, classes


@pytest.mark.parametrize("k,temperature", [(1, 0.07), (7, 0.07), (20, 0.5), (60, 0.07), (500, 1.0)])
def test_votes_match_the_brute_force_loop(k, temperature):
    queries, _, memory, ml, classes = data()
    want = brute_votes(queries, memory, ml, classes, k, temperature)
    got = knn_votes(queries, memory, ml, classes, k=k, temperature=temperature).numpy()
    # votes are scaled per query by exp(-s_max / tau): compare after normalising each row
    np.testing.assert_allclose(got / got.sum(1, keepdims=True), want / want.sum(1, keepdims=True), rtol=1e-4, atol=1e-7)
    assert (ranked_classes(torch.from_numpy(want))[:, 0] == ranked_classes(torch.from_numpy(got))[:, 0]).all()


def test_chunking_over_queries_and_memory_changes_nothing():
    queries, ql, memory, ml, classes = data(n_memory=101, n_query=33)
    whole = knn_votes(queries, memory, ml, classes, k=10)
    top = RunningTopK(queries, k=10, query_chunk=4)
    for s in range(0, len(memory), 7):  # chunks smaller than k too
        top.add(memory[s:s + 7], ml[s:s + 7])
    torch.testing.assert_close(top.votes(classes), whole, rtol=1e-5, atol=1e-9)  # float32 sums
    assert top.sims.shape == (33, 10)  # only a running top k is kept


def test_accuracies_match_scikit_learn_with_exp_weights():
    neighbors = pytest.importorskip("sklearn.neighbors")
    queries, ql, memory, ml, classes = data(n_memory=200, n_query=80, classes=5, seed=1)
    for k, tau in ((15, 0.07), (200, 0.07), (9, 1e6)):  # tau -> large: uniform weights
        clf = neighbors.KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute",
                                             weights=lambda d, tau=tau: np.exp((1.0 - d) / tau))
        clf.fit(memory.double().numpy(), ml.numpy())
        votes = knn_votes(queries, memory, ml, classes, k=k, temperature=tau)
        proba = clf.predict_proba(queries.double().numpy())
        np.testing.assert_allclose((votes / votes.sum(1, keepdim=True)).numpy(), proba, rtol=1e-4, atol=1e-7)
        sk_top1 = float((clf.predict(queries.double().numpy()) == ql.numpy()).mean())
        assert knn_accuracy(queries, ql, memory, ml, classes, k=k, temperature=tau)["top1"] == pytest.approx(sk_top1)
    uniform = neighbors.KNeighborsClassifier(n_neighbors=9, metric="cosine", algorithm="brute", weights="uniform")
    uniform.fit(memory.numpy(), ml.numpy())
    votes = knn_votes(queries, memory, ml, classes, k=9, temperature=1e6)
    np.testing.assert_allclose((votes / votes.sum(1, keepdim=True)).numpy(), uniform.predict_proba(queries.numpy()),
                               rtol=1e-4)


def test_small_temperature_stays_finite_and_is_one_nn():
    queries, ql, memory, ml, classes = data()
    votes = knn_votes(queries, memory, ml, classes, k=50, temperature=1e-4)
    assert torch.isfinite(votes).all()
    one = knn_votes(queries, memory, ml, classes, k=1)
    assert torch.equal(ranked_classes(votes)[:, 0], ranked_classes(one)[:, 0])


def test_top1_and_top5_and_ties():
    votes = torch.tensor([[1.0, 3.0, 3.0, 0.0, 0.0, 0.0, 0.0],   # tie 1/2: class 1 first
                          [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0]])
    assert ranked_classes(votes)[0, :2].tolist() == [1, 2]
    acc = topk_accuracies(votes, torch.tensor([2, 0]))
    assert acc == {1: 0.0, 5: 1.0}  # class 0 of row 2 is ranked second (lowest id among the zeros)
    assert topk_accuracies(votes, torch.tensor([1, 6])) == {1: 1.0, 5: 1.0}
    perfect = knn_accuracy(torch.eye(3), torch.arange(3), torch.eye(3), torch.arange(3), 3, k=1)
    assert perfect == {"top1": 1.0, "top5": 1.0}


@pytest.mark.parametrize("k,t", [(0, 0.07), (2.5, 0.07), (True, 0.07), (5, 0.0), (5, -1.0), (5, float("nan")),
                                 (5, float("inf"))])
def test_bad_options_are_config_errors(k, t):
    with pytest.raises(ConfigError):
        check_knn_options(k, t)


def test_bad_shapes_and_labels_are_data_errors():
    with pytest.raises(DataError):
        knn_votes(torch.zeros(3, 4), torch.zeros(5, 3), torch.zeros(5, dtype=torch.long), 2)
    with pytest.raises(DataError):
        knn_votes(torch.randn(3, 4), torch.randn(5, 4), torch.full((5,), 7), 2)
    with pytest.raises(DataError):
        topk_accuracies(torch.zeros(2, 3), torch.tensor([0, 3]))
