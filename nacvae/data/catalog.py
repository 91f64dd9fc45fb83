"""Every dataset by name, in memory or streamed.

``open_dataset`` is ``load_dataset`` (``nacvae.data.sources``: digits, Fashion-MNIST,
CIFAR-10 and small image folders, held whole in memory as ``ImageData``) widened to the
datasets that are read batch by batch as ``StreamedImages``:

- ``imagenet``: ImageNet-1K under ``--data-dir`` (``nacvae.data.imagenet``), 224 px;
- ``flickr25k``: MIRFLICKR-25K under ``--data-dir`` (``nacvae.data.flickr``), 224 px;
- ``webdataset:URL_PATTERN``: WebDataset tar shards (``nacvae.data.shards``), 224 px;
- ``folder:PATH`` when one split, decoded at the training size, would take more than
  ``FOLDER_STREAM_BYTES`` (2 GiB) of memory.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nacvae.checks import check_int
from nacvae.data.sources import (
    DEFAULT_FOLDER_SIZE, FOLDER_PREFIX, ImageData, channel_stats, default_data_dir, folder_decoded_bytes, list_folder,
    load_dataset
)
from nacvae.data.sources.folder import read_images
from nacvae.data.stream import IMAGENET_MEAN, IMAGENET_STD, StreamedImages, stream_stats
from nacvae.errors import ConfigError, DataError
from nacvae.presets import WEBDATASET_PREFIX

__all__ = ["FOLDER_STREAM_BYTES", "STREAMED_DATASETS", "WEBDATASET_PREFIX", "dataset_stats", "is_streamed_name",
           "open_dataset", "streams"]

STREAMED_DATASETS = ("imagenet", "flickr25k")
STREAMED_SIZE = 224
# A folder split larger than this when decoded is streamed rather than loaded.
FOLDER_STREAM_BYTES = 2 * 2**30


def is_streamed_name(name: str) -> bool:
    """Whether the dataset ``name`` is always streamed (folders are decided by their size)."""
    return name.lower() in STREAMED_DATASETS or name.startswith(WEBDATASET_PREFIX)


def streams(name: str, image_size: int | None = None) -> bool:
    """Whether ``open_dataset(name, ...)`` streams the dataset (for a folder: its train split)."""
    if is_streamed_name(name):
        return True
    if name.startswith(FOLDER_PREFIX) and name[len(FOLDER_PREFIX):]:
        listing = list_folder(Path(name[len(FOLDER_PREFIX):]), "train")
        return folder_decoded_bytes(listing, image_size or DEFAULT_FOLDER_SIZE) > FOLDER_STREAM_BYTES
    return False


def _check_size(image_size) -> None:
    check_int("image-size", image_size, optional=True)


def open_dataset(name: str, split: str = "train", data_dir: str | Path | None = None, download: bool = True,
                 image_size: int | None = None) -> ImageData | StreamedImages:
    """One split of a dataset: in memory (``ImageData``) or streamed (``StreamedImages``)."""
    if split not in ("train", "test"):
        raise ConfigError(f"Unknown split {split!r}; use 'train' or 'test'.")
    _check_size(image_size)
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    key = name.lower()
    if key == "imagenet":
        from nacvae.data.imagenet import load_imagenet

        return load_imagenet(root, split, image_size or STREAMED_SIZE)
    if key == "flickr25k":
        from nacvae.data.flickr import load_flickr

        return load_flickr(root, split, image_size or STREAMED_SIZE)
    if name.startswith(WEBDATASET_PREFIX):
        from nacvae.data.shards import load_shards

        return load_shards(name[len(WEBDATASET_PREFIX):], split, image_size or STREAMED_SIZE)
    if name.startswith(FOLDER_PREFIX) and name[len(FOLDER_PREFIX):]:
        return _open_folder(name, split, image_size or DEFAULT_FOLDER_SIZE)
    return load_dataset(name, split, data_dir, download=download, image_size=image_size)


def _open_folder(name: str, split: str, size: int) -> ImageData | StreamedImages:
    listing = list_folder(Path(name[len(FOLDER_PREFIX):]), split)
    labels = None if listing.labels is None else torch.from_numpy(listing.labels)
    if folder_decoded_bytes(listing, size) > FOLDER_STREAM_BYTES:
        return StreamedImages([str(f) for f in listing.files], labels, listing.classes, listing.name, size,
                              channels=1 if listing.gray else 3, crop="resize")
    try:
        images = read_images(listing.files, size, listing.gray)
    except OSError as exc:
        raise DataError(f"{exc.filename or name} cannot be read ({exc.strerror or exc}); "
                        "check its permissions.") from None
    return ImageData(images=images, labels=labels, classes=listing.classes, name=listing.name)


def dataset_stats(name: str, data: ImageData | StreamedImages | None = None, workers: int = 0,
                  data_dir: str | Path | None = None, image_size: int | None = None, bad_images=None
                  ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) in [0, 1] units that normalise the dataset's images.

    ImageNet, FLICKR-25K and shards: the usual ImageNet constants. Folders: computed from
    the train split (``data`` when it is the train split, else read from ``data_dir``);
    a streamed folder's from a seeded sample of at most 10,000 train images. Others: the
    constants of ``channel_stats``. ``bad_images`` (a ``bad_images.BadImages``): a streamed
    folder's unreadable images are replaced and recorded there instead of stopping.
    """
    if is_streamed_name(name):
        return IMAGENET_MEAN, IMAGENET_STD
    if name.startswith(FOLDER_PREFIX):
        if data is None:
            data = open_dataset(name, "train", data_dir, download=False, image_size=image_size)
        if isinstance(data, StreamedImages):
            return stream_stats(data, workers, bad_images=bad_images)
    return channel_stats(name, data)
