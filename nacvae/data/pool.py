"""The pooled train+test dataset that the retrieval protocol splits (docs/evaluation.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nacvae.data.sources import load_dataset
from nacvae.data.splits import default_queries_per_class, retrieval_split
from nacvae.errors import DataError

# Unsupervised training images per class drawn from the gallery: the paper's 500 for
# CIFAR-10 (5,000 images), the same for Fashion-MNIST; the whole gallery elsewhere.
TRAIN_PER_CLASS = {"cifar10": 500, "fashion-mnist": 500}


@dataclass
class RetrievalPool:
    images: torch.Tensor | None        # uint8 [N, C, H, W], train split first, then test; None when streamed
    labels: torch.Tensor               # int64 [N], or multi-hot [N, C] for multi-label data
    split: dict[str, torch.Tensor]     # query / gallery / train indices into the pool
    queries_per_class: int | None      # None for multi-label data (queries drawn from all images)
    train_per_class: int | None
    seed: int
    stream: Any = None                 # the pooled StreamedImages when streamed

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


def streamed_retrieval_pool(name: str, data_dir: str | Path | None = None, image_size: int | None = None,
                            seed: int = 0, queries_per_class: int | None = None,
                            train_per_class: int | None = None) -> RetrievalPool:
    """The retrieval pool of a streamed dataset: file lists and labels only.

    FLICKR-25K (multi-label): every labelled image, split as SSDH and DistillHash do
    (``nacvae.data.flickr.flickr_split``). Others: train then test split, split per class
    as ``retrieval_pool`` does.
    """
    from nacvae.data.catalog import open_dataset
    from nacvae.data.stream import StreamedImages
    from nacvae.errors import ConfigError

    if name.lower() == "flickr25k":
        from nacvae.data.flickr import flickr_split, load_flickr_labelled
        from nacvae.data.sources import default_data_dir

        if queries_per_class is not None:
            raise ConfigError("--queries-per-class does not apply to FLICKR-25K, whose images have several labels; "
                              "its split draws 2,000 queries from all images.")
        root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        pool = load_flickr_labelled(root, image_size or 224)
        return RetrievalPool(None, pool.labels, flickr_split(len(pool), seed), None, None, seed, stream=pool)
    train = open_dataset(name, "train", data_dir, image_size=image_size)
    test = open_dataset(name, "test", data_dir, image_size=image_size)
    if train.labels is None or test.labels is None:
        raise DataError(f"Retrieval needs class labels, and the dataset {name} has none.")
    pooled = StreamedImages(list(train.files) + list(test.files), torch.cat([train.labels, test.labels]),
                            train.classes, train.name, train.size, train.channels, train.crop)
    labels = pooled.labels
    q = queries_per_class or default_queries_per_class(name, labels)
    t = train_per_class if train_per_class is not None else TRAIN_PER_CLASS.get(name)
    return RetrievalPool(None, labels, retrieval_split(labels, q, t, seed), q, t, seed, stream=pooled)
