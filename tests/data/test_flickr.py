"""MIRFLICKR-25K: concept files to multi-hot labels, the SSDH/DistillHash split, multi-label mAP."""

import numpy as np
import pytest
import torch

from nacvae.data.flickr import flickr_split, flickr_split_sizes, load_flickr, load_flickr_labelled
from nacvae.data.splits import random_retrieval_split
from nacvae.errors import DataError
from nacvae.eval.retrieval import mean_average_precision
from tests.imagefiles import FLICKR_CONCEPTS, make_mirflickr


def tiny_labels(n=12, seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 24)) < 0.15).astype(np.uint8)
    labels[:, 0] |= (np.arange(n) % 3 == 0)
    labels[4] = 0  # image 5 has no label: dropped
    return labels


@pytest.fixture(scope="module")
def flickr(tmp_path_factory):
    labels = tiny_labels()
    return make_mirflickr(tmp_path_factory.mktemp("flickr"), labels), labels


def test_concept_files_become_multi_hot_labels(flickr):
    root, labels = flickr
    pool = load_flickr_labelled(root)
    assert pool.classes == sorted(FLICKR_CONCEPTS) and len(pool.classes) == 24  # no _r1, no README
    keep = [k for k in range(len(labels)) if labels[k].any()]
    assert len(pool) == len(keep) == 11 and pool.multi_label and pool.image_shape == (3, 224, 224)
    order = [FLICKR_CONCEPTS.index(c) for c in pool.classes]
    assert np.array_equal(pool.labels.numpy(), labels[keep][:, order])
    assert pool.files[4].endswith("/im6.jpg")  # im5 dropped, numbers in increasing order


def test_the_paper_split_sizes_and_disjointness():
    assert flickr_split_sizes(20_015) == (2000, 5000)
    assert flickr_split_sizes(100) == (10, None)
    split = flickr_split(20_015, seed=0)
    q, g, t = (split[k] for k in ("query", "gallery", "train"))
    assert len(q) == 2000 and len(g) == 18_015 and len(t) == 5000
    assert len(set(q.tolist()) | set(g.tolist())) == 20_015 and not set(q.tolist()) & set(g.tolist())
    assert set(t.tolist()) <= set(g.tolist())
    again = flickr_split(20_015, seed=0)
    assert all(torch.equal(split[k], again[k]) for k in split)
    assert not torch.equal(flickr_split(20_015, seed=1)["query"], q)


def test_random_split_refuses_too_few_images():
    from nacvae.errors import ConfigError

    with pytest.raises(ConfigError, match="only 3 images"):
        random_retrieval_split(3, 2, 2, seed=0)


def test_train_and_test_splits_are_the_training_set_and_the_queries(flickr):
    root, _ = flickr
    pool = load_flickr_labelled(root)
    split = flickr_split(len(pool), 0)
    train, test = load_flickr(root, "train"), load_flickr(root, "test")
    assert list(train.files) == [pool.files[i] for i in split["train"]]
    assert list(test.files) == [pool.files[i] for i in split["query"]]


def test_a_listed_image_that_is_missing_is_named(tmp_path):
    root = make_mirflickr(tmp_path, tiny_labels())
    with open(root / "mirflickr25k_annotations_v080" / "dog.txt", "a") as f:
        f.write("99\n")
    with pytest.raises(DataError, match="im99.jpg"):
        load_flickr_labelled(root)


def brute_force_map(q_codes, q_labels, g_codes, g_labels):
    """Hamming ranking, ties by gallery index, relevant = at least one shared label,
    AP over the whole gallery, queries without a relevant item left out."""
    aps = []
    for qc, ql in zip(q_codes, q_labels):
        dist = [int(np.sum(qc != gc)) for gc in g_codes]
        order = sorted(range(len(g_codes)), key=lambda i: (dist[i], i))
        hits, precisions = 0, []
        for rank, i in enumerate(order, 1):
            if set(np.flatnonzero(ql)) & set(np.flatnonzero(g_labels[i])):
                hits += 1
                precisions.append(hits / rank)
        if hits:
            aps.append(sum(precisions) / hits)
    return sum(aps) / len(aps)


def test_multi_label_map_with_flickr_labels_equals_brute_force(flickr):
    root, _ = flickr
    labels = load_flickr_labelled(root).labels  # uint8 [N, 24], as the evaluator gets them
    rng = np.random.default_rng(3)
    codes = rng.random((len(labels), 6)) < 0.5
    q, g = np.arange(3), np.arange(3, len(labels))
    value = mean_average_precision(torch.from_numpy(codes[q]), labels[q], torch.from_numpy(codes[g]), labels[g])
    expected = brute_force_map(codes[q], labels.numpy()[q], codes[g], labels.numpy()[g])
    assert value == pytest.approx(expected, abs=1e-12)
