"""In-memory dataset sources: each is loaded whole into memory as a uint8 tensor.

Supported names: ``digits`` (scikit-learn's bundled 8x8 digits), ``fashion-mnist``
(gzipped IDX files), ``cifar10`` (torchvision's python-pickle layout) and
``folder:PATH`` (a folder of image files; ``nacvae.data.catalog`` streams a large one
instead), one module each; ``imagedata`` holds what they share. Nothing is cached on
disk; the only thing ever written is a download of CIFAR-10 or Fashion-MNIST into
``data_dir`` when asked. The streamed datasets (ImageNet, FLICKR-25K, shards) are in
``nacvae.data.catalog``.
"""

from __future__ import annotations

import os
from pathlib import Path

# The source modules, and their constants and folder listing: the rest of nacvae
# imports those from here, whichever module defines them.
from nacvae.checks import check_int
from nacvae.data.sources import cifar10, digits, fashion_mnist, folder
from nacvae.data.sources.digits import DIGITS_TEST_FRACTION
from nacvae.data.sources.fashion_mnist import FASHION_MNIST_CLASSES, SYSTEM_FASHION_MNIST_DIR
from nacvae.data.sources.folder import (
    DEFAULT_FOLDER_SIZE, FOLDER_PREFIX, FOLDER_TEST_FRACTION, IMAGE_EXTENSIONS, FolderListing, folder_decoded_bytes,
    list_folder
)
from nacvae.data.sources.imagedata import DOWNLOAD_TIMEOUT_S, SPLIT_SEED, ImageData, compute_stats, resize_uint8
from nacvae.errors import ConfigError
from nacvae.presets import WEBDATASET_PREFIX

__all__ = [
    "DATASET_NAMES",
    "ImageData",
    "channel_stats",
    "default_data_dir",
    "load_dataset",
]

DATASET_NAMES = ("digits", "fashion-mnist", "cifar10")
SPLITS = ("train", "test")

# Per-channel mean/std of the train split in [0, 1] units. CIFAR-10's are the usual
# published constants; the other two were computed once with `channel_stats` on the
# train split (population std over all pixels) and are checked by the tests.
_CHANNEL_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "digits": ((0.3055,), (0.3759,)),
}


def default_data_dir() -> Path:
    """``$NACVAE_DATA_DIR`` if set, otherwise ``~/.cache/nacvae/data`` (not created)."""
    env = os.environ.get("NACVAE_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "nacvae" / "data"


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | Path | None = None,
    download: bool = True,
    image_size: int | None = None,
) -> ImageData:
    """Load one split of a dataset into memory.

    ``image_size`` resizes to a square of that side (built-in datasets keep their
    native size when it is None; folders default to 32).
    """
    if split not in SPLITS:
        raise ConfigError(f"Unknown split {split!r}; use 'train' or 'test'.")
    check_int("image-size", image_size, optional=True)
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()

    if name.startswith(FOLDER_PREFIX):
        path = name[len(FOLDER_PREFIX):]
        if not path:
            raise ConfigError("A folder dataset needs a path, as in 'folder:/path/to/images'.")
        return folder.load(Path(path), split, image_size or DEFAULT_FOLDER_SIZE)

    key = name.lower()
    if key == "digits":
        data = digits.load(split)
    elif key == "fashion-mnist":
        data = fashion_mnist.load(root, split, download)
    elif key == "cifar10":
        data = cifar10.load(root, split, download)
    else:
        raise ConfigError(_unknown_name_message(name))

    if image_size is not None and image_size != data.images.shape[-1]:
        data.images = resize_uint8(data.images, image_size)
    return data


def channel_stats(
    name: str, data: ImageData | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) in [0, 1] units used for normalisation.

    Built-in datasets return fixed constants; for ``folder:PATH`` they are computed from
    ``data`` (or from the folder's train split when ``data`` is None).
    """
    key = name.lower()
    if key in _CHANNEL_STATS:
        return _CHANNEL_STATS[key]
    if name.startswith(FOLDER_PREFIX):
        if data is None:
            data = load_dataset(name, "train")
        return compute_stats(data.images)
    raise ConfigError(_unknown_name_message(name))


# Datasets read batch by batch (nacvae.data.catalog), which load_dataset cannot hold.
_STREAMED_NAMES = ("imagenet", "flickr25k")


def _unknown_name_message(name: str) -> str:
    known = ", ".join(DATASET_NAMES)
    if name.lower() in _STREAMED_NAMES or name.startswith(WEBDATASET_PREFIX):
        return (f"The dataset {name} is read batch by batch and this command needs one held in memory; "
                f"choose one of {known} or folder:PATH.")
    return f"Unknown dataset {name!r}; choose one of {known} or folder:PATH."
