import pytest
import torch

from nacvae.data.splits import default_queries_per_class, paper_cifar10_split, retrieval_split
from nacvae.errors import ConfigError, DataError


def synthetic_labels(per_class=6000, classes=10, seed=0):
    labels = torch.arange(classes).repeat_interleave(per_class)
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


def test_paper_split_sizes_balance_and_order():
    labels = synthetic_labels()
    split = paper_cifar10_split(labels, seed=0)
    query, gallery, train = split["query"], split["gallery"], split["train"]
    assert (len(query), len(gallery), len(train)) == (10_000, 50_000, 5_000)
    for part in (query, gallery, train):
        assert part.dtype == torch.int64
        assert torch.equal(part, part.sort().values)
    assert torch.equal(torch.bincount(labels[query]), torch.full((10,), 1000))
    assert torch.equal(torch.bincount(labels[gallery]), torch.full((10,), 5000))
    assert torch.equal(torch.bincount(labels[train]), torch.full((10,), 500))
    # Query and gallery partition the pool; train is the first 500 per class of the gallery.
    assert torch.equal(torch.cat([query, gallery]).sort().values, torch.arange(60_000))
    assert not set(query.tolist()) & set(gallery.tolist())
    for c in range(10):
        in_gallery = gallery[labels[gallery] == c]
        assert torch.equal(train[labels[train] == c], in_gallery[:500])


def test_seed_determinism():
    labels = synthetic_labels()
    a = paper_cifar10_split(labels, seed=3)
    b = paper_cifar10_split(labels, seed=3)
    c = paper_cifar10_split(labels, seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["query"], c["query"])


def test_general_split_and_errors():
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 2, 2, 2])
    split = retrieval_split(labels, queries_per_class=1, train_per_class=None, seed=0)
    assert len(split["query"]) == 3 and torch.equal(split["train"], split["gallery"])
    with pytest.raises(ConfigError):
        retrieval_split(labels, queries_per_class=3, train_per_class=None, seed=0)
    with pytest.raises(ConfigError):
        retrieval_split(labels, queries_per_class=1, train_per_class=3, seed=0)
    with pytest.raises(ConfigError):
        retrieval_split(labels, queries_per_class=0, train_per_class=None, seed=0)
    with pytest.raises(DataError):
        retrieval_split(labels.float(), queries_per_class=1, train_per_class=None, seed=0)
    with pytest.raises(DataError):
        paper_cifar10_split(labels)


def test_default_queries_per_class():
    assert default_queries_per_class("cifar10", synthetic_labels(6, 10)) == 1000
    assert default_queries_per_class("fashion-mnist", synthetic_labels(7, 10)) == 100
    digits = torch.tensor([0] * 178 + [1] * 182 + [2] * 177)
    assert default_queries_per_class("digits", digits) == 17
    assert default_queries_per_class("folder:/x", torch.tensor([0, 0, 1, 1])) == 1
