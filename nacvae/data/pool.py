"""The pooled train+test dataset that the retrieval protocol splits (method.md §7)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from nacvae.data.sources import load_dataset
from nacvae.data.splits import default_queries_per_class, retrieval_split
from nacvae.errors import DataError

# Unsupervised training images per class drawn from the gallery: the paper's 500 for
# CIFAR-10 (5,000 images), the same for Fashion-MNIST; the whole gallery elsewhere.
TRAIN_PER_CLASS = {"cifar10": 500, "fashion-mnist": 500}


@dataclass
class RetrievalPool:
    images: torch.Tensor               # uint8 [N, C, H, W], train split first, then test
    labels: torch.Tensor               # int64 [N]
    split: dict[str, torch.Tensor]     # query / gallery / train indices into the pool
    queries_per_class: int
    train_per_class: int | None
    seed: int

    def describe(self) -> dict:
        return {
            "queries_per_class": self.queries_per_class, "train_per_class": self.train_per_class,
            "split_seed": self.seed, "num_queries": len(self.split["query"]),
            "gallery_size": len(self.split["gallery"]), "train_size": len(self.split["train"]),
        }


def retrieval_pool(name: str, data_dir: str | Path | None = None, image_size: int | None = None,
                   download: bool = True, seed: int = 0, queries_per_class: int | None = None,
                   train_per_class: int | None = None) -> RetrievalPool:
    train = load_dataset(name, "train", data_dir, download=download, image_size=image_size)
    test = load_dataset(name, "test", data_dir, download=download, image_size=image_size)
    if train.labels is None or test.labels is None:
        raise DataError(f"Retrieval needs class labels, and the dataset {name} has none.")
    images = torch.cat([train.images, test.images])
    labels = torch.cat([train.labels, test.labels])
    q = queries_per_class or default_queries_per_class(name, labels)
    t = train_per_class if train_per_class is not None else TRAIN_PER_CLASS.get(name)
    return RetrievalPool(images, labels, retrieval_split(labels, q, t, seed), q, t, seed)
