"""Fashion-MNIST: the four IDX files of unsigned bytes (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``),
gzipped as published, from the first of these folders that holds all four:
``data_dir/FashionMNIST/raw`` (torchvision's layout, where un-gzipped files are accepted
too), ``data_dir/fashion-mnist``, ``data_dir`` and Debian's
``/usr/share/datasets/fashion-mnist``. When none does and a download is allowed,
torchvision fetches them into ``data_dir/FashionMNIST/raw``. Images are 28x28 grayscale,
labels 0..9.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from nacvae.data.sources.imagedata import ImageData, download_into
from nacvae.errors import DataError

__all__ = ["FASHION_MNIST_CLASSES", "SYSTEM_FASHION_MNIST_DIR", "load"]

# Where Debian's `dataset-fashion-mnist` package puts the files.
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_file(folder: Path, stem: str, allow_raw: bool) -> Path | None:
    gz = folder / (stem + ".gz")
    if gz.is_file():
        return gz
    if allow_raw and (folder / stem).is_file():
        return folder / stem
    return None


def _fashion_mnist_candidates(root: Path) -> list[tuple[Path, bool]]:
    # (folder, whether un-gzipped files are accepted there)
    return [
        (root / "FashionMNIST" / "raw", True),
        (root / "fashion-mnist", False),
        (root, False),
        (SYSTEM_FASHION_MNIST_DIR, False),
    ]


def _locate_fashion_mnist(root: Path, split: str) -> tuple[Path, Path] | None:
    img_stem, lbl_stem = _FMNIST_FILES[split]
    for folder, allow_raw in _fashion_mnist_candidates(root):
        img = _find_file(folder, img_stem, allow_raw)
        lbl = _find_file(folder, lbl_stem, allow_raw)
        if img is not None and lbl is not None:
            return img, lbl
    return None


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (gzipped or not)."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} could not be read as a gzipped IDX file ({exc}).") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header or struct.unpack(">I", raw[:4])[0] != magic:
        raise DataError(
            f"{path} is not a valid IDX file (expected magic number {magic}); "
            "replace it with the original Fashion-MNIST file."
        )
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    if len(raw) != header + int(np.prod(dims)):
        raise DataError(
            f"{path} is truncated or has trailing bytes; replace it with the original "
            "Fashion-MNIST file."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def load(root: Path, split: str, download: bool) -> ImageData:
    found = _locate_fashion_mnist(root, split)
    tried = False
    if found is None and download:
        tried = True

        def fetch(tmp: str) -> None:
            # torchvision is imported only for a download.
            from torchvision.datasets import FashionMNIST

            FashionMNIST(root=tmp, train=(split == "train"), download=True)

        if download_into(root, fetch, os.path.join("FashionMNIST", "raw")):
            found = _locate_fashion_mnist(root, split)
    if found is None:
        places = ", ".join(str(f) for f, _ in _fashion_mnist_candidates(root))
        why = " and could not be downloaded" if tried else ""
        raise DataError(
            f"Fashion-MNIST {split} files were not found in any of {places}{why}; "
            f"put the four *-ubyte.gz files in {root / 'fashion-mnist'} "
            "or run `apt-get install dataset-fashion-mnist`."
        )
    img_path, lbl_path = found
    images = _read_idx(img_path, 0x0803)
    labels = _read_idx(lbl_path, 0x0801)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise DataError(
            f"{img_path} and {lbl_path} do not hold matching 28x28 images and labels; "
            "replace them with the original Fashion-MNIST files."
        )
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise DataError(
            f"{lbl_path} holds labels outside 0..9; replace it with the original file."
        )
    return ImageData(
        images=torch.from_numpy(images).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        classes=list(FASHION_MNIST_CLASSES),
        name="fashion-mnist",
    )
