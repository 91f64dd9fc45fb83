"""Evaluation splits for Hamming retrieval.

The paper's CIFAR-10 protocol (after DistillHash): pool the 60,000 train+test images
(train first, then test), draw 1,000 queries per class at random, keep the other
50,000 as the gallery, and train the encoder on the first 500 images per class of the
gallery (in gallery order), 5,000 in all. All indices refer to the pooled dataset.
"""

from __future__ import annotations

import torch

from nacvae.checks import check_int
from nacvae.errors import ConfigError, DataError

__all__ = ["default_queries_per_class", "paper_cifar10_split", "random_retrieval_split", "retrieval_split"]

# Queries per class for datasets other than the paper's. Fashion-MNIST keeps the
# retrieval cost moderate (1,000 queries against a 69,000-image gallery).
_QUERIES_PER_CLASS = {"cifar10": 1000, "fashion-mnist": 100}
# ImageNet: 5 per class (5,000 queries), fewer when a class is small (a sample folder).
_IMAGENET_QUERIES_PER_CLASS = 5
# Elsewhere: this fraction of the smallest class, at least one image.
_SMALL_DATASET_FRACTION = 0.1


def _check_labels(labels) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.numel() == 0:
        raise DataError("Retrieval splits need a non-empty 1-D tensor of class labels.")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise DataError(f"Retrieval splits need integer class labels, got dtype {labels.dtype}.")
    return labels.long().cpu()


def retrieval_split(
    labels: torch.Tensor, queries_per_class: int, train_per_class: int | None, seed: int
) -> dict[str, torch.Tensor]:
    """Split a pooled labelled dataset into query, gallery and training indices.

    ``queries_per_class`` images of each class are drawn at random (``torch`` generator
    seeded with ``seed``, classes in increasing label order) as queries; every other
    image is in the gallery. ``train`` is the first ``train_per_class`` gallery images
    of each class in gallery (index) order, or the whole gallery when it is None.

    Returns int64 tensors ``query``, ``gallery`` and ``train``, each sorted.
    """
    labels = _check_labels(labels)
    for name, value in (("queries_per_class", queries_per_class), ("train_per_class", train_per_class)):
        if value is None and name == "train_per_class":
            continue
        check_int(name, value, prefix="")
    queries_per_class = int(queries_per_class)
    train_per_class = None if train_per_class is None else int(train_per_class)
    needed = queries_per_class + (train_per_class or 1)

    generator = torch.Generator().manual_seed(int(seed))
    is_query = torch.zeros(len(labels), dtype=torch.bool)
    classes = torch.unique(labels)
    for c in classes.tolist():
        members = torch.nonzero(labels == c).flatten()
        if len(members) < needed:
            raise ConfigError(
                f"Class {c} has {len(members)} images but the split needs at least {needed} "
                f"({queries_per_class} queries and {train_per_class or 1} in the gallery)."
            )
        picked = torch.randperm(len(members), generator=generator)[:queries_per_class]
        is_query[members[picked]] = True

    query = torch.nonzero(is_query).flatten()
    gallery = torch.nonzero(~is_query).flatten()
    if train_per_class is None:
        train = gallery.clone()
    else:
        gallery_labels = labels[gallery]
        keep = torch.zeros(len(gallery), dtype=torch.bool)
        for c in classes.tolist():
            keep[torch.nonzero(gallery_labels == c).flatten()[:train_per_class]] = True
        train = gallery[keep]
    return {"query": query, "gallery": gallery, "train": train}


def paper_cifar10_split(labels: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """The paper's split of the 60,000 pooled CIFAR-10 labels: 10,000 / 50,000 / 5,000."""
    labels = _check_labels(labels)
    if len(labels) != 60_000 or len(torch.unique(labels)) != 10:
        raise DataError(
            "The paper's CIFAR-10 split needs the 60,000 pooled train+test labels of 10 classes, "
            f"got {len(labels)} labels of {len(torch.unique(labels))} classes."
        )
    return retrieval_split(labels, queries_per_class=1000, train_per_class=500, seed=seed)


def default_queries_per_class(dataset_name: str, labels: torch.Tensor) -> int:
    """Queries per class for a dataset's retrieval split.

    ``cifar10``: 1,000 (the paper). ``fashion-mnist``: 100. ``imagenet``: 5 (5,000 queries
    against the other 1.33 million train+val images), or the rule below when that is less. Any other dataset (for
    example ``digits`` or an image folder): 10% of the smallest class, at least 1.
    """
    name = dataset_name.strip().lower().replace("_", "-")
    if name in ("fashionmnist",):
        name = "fashion-mnist"
    if name in _QUERIES_PER_CLASS:
        return _QUERIES_PER_CLASS[name]
    labels = _check_labels(labels)
    smallest = int(torch.unique(labels, return_counts=True)[1].min())
    generic = max(1, int(smallest * _SMALL_DATASET_FRACTION))
    return min(_IMAGENET_QUERIES_PER_CLASS, generic) if name == "imagenet" else generic


def random_retrieval_split(n: int, num_queries: int, num_train: int | None, seed: int) -> dict[str, torch.Tensor]:
    """A split that ignores labels (for multi-label data): ``num_queries`` random queries,
    every other item in the gallery, and ``num_train`` random gallery items (all of the
    gallery when None) as the training set. One ``torch`` generator seeded with ``seed``
    draws the queries and then the training items. Returns sorted int64 tensors."""
    for name, value in (("num_queries", num_queries), ("num_train", num_train)):
        if value is None and name == "num_train":
            continue
        check_int(name, value, prefix="")
    if num_queries + (num_train or 1) > n:
        raise ConfigError(f"The split needs {num_queries} queries and {num_train or 1} gallery images, "
                          f"but there are only {n} images.")
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(n, generator=generator)
    query = order[:num_queries].sort().values
    is_query = torch.zeros(n, dtype=torch.bool)
    is_query[query] = True
    gallery = torch.nonzero(~is_query).flatten()
    if num_train is None:
        train = gallery.clone()
    else:
        train = gallery[torch.randperm(len(gallery), generator=generator)[:num_train]].sort().values
    return {"query": query, "gallery": gallery, "train": train}
