"""Image folders, ``folder:PATH``: PNG, JPEG, BMP or WebP files (hidden ones skipped),
decoded with PIL and resized to squares. Files directly inside PATH are an unlabelled
dataset; one sub-folder per class (searched recursively) gives labels, numbered in
sorted order of the folder names. With both ``train/`` and ``test/`` sub-folders those are
the splits, otherwise a fixed stratified tenth is held out as the test split. The images
are grayscale when every file of the dataset is, else RGB. ``list_folder`` lists one split
without decoding it, for ``nacvae.data.catalog`` to stream a folder too large to hold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nacvae.data.sources.imagedata import SPLIT_SEED, ImageData, stratified_holdout
from nacvae.errors import DataError
from nacvae.presets import FOLDER_PREFIX

__all__ = [
    "DEFAULT_FOLDER_SIZE",
    "FOLDER_PREFIX",
    "FOLDER_TEST_FRACTION",
    "IMAGE_EXTENSIONS",
    "FolderListing",
    "folder_decoded_bytes",
    "list_folder",
    "load",
    "read_images",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_FOLDER_SIZE = 32
FOLDER_TEST_FRACTION = 0.1


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _images_under(folder: Path) -> list[Path]:
    found = []
    def fail(exc: OSError) -> None:  # os.walk would skip an unreadable folder silently
        raise exc

    for dirpath, dirnames, filenames in os.walk(folder, onerror=fail):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in sorted(filenames))
    return [p for p in found if _is_image(p)]


def _scan_split(folder: Path) -> tuple[list[Path], list[str] | None]:
    """Image files of one split folder and, for class sub-folders, their class names."""
    direct = sorted(p for p in folder.iterdir() if _is_image(p))
    class_files = {d.name: _images_under(d) for d in _visible_dirs(folder)}
    class_files = {k: v for k, v in class_files.items() if v}
    if direct and class_files:
        raise DataError(
            f"{folder} has images both directly inside it and in sub-folders; put all of "
            "them in one sub-folder per class, or all directly in the folder for unlabelled data."
        )
    if not direct and not class_files:
        raise DataError(
            f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}); put the images there, "
            "directly or in one sub-folder per class."
        )
    if direct:
        return direct, None
    files, names = [], []
    for name in sorted(class_files):
        files.extend(class_files[name])
        names.extend([name] * len(class_files[name]))
    return files, names


_GRAY_MODES = ("1", "L")


def _open_error(path: Path, exc: Exception) -> DataError:
    return DataError(
        f"{path} could not be read as an image ({type(exc).__name__}); "
        "remove or replace that file."
    )


def _all_gray(files: list[Path]) -> bool:
    """Whether every file is a grayscale image.

    Reads only the headers, but of every file, so an unreadable file is reported
    whichever split is loaded.
    """
    from PIL import Image

    gray = True
    for path in files:
        try:
            with Image.open(path) as im:
                gray = gray and im.mode in _GRAY_MODES
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds of errors
            raise _open_error(path, exc) from None
    return gray


def read_images(files: list[Path], size: int, gray: bool) -> torch.Tensor:
    """Decode ``files`` into uint8 squares of ``size`` pixels, [N, 1 or 3, size, size]."""
    from PIL import Image

    arrays = []
    for path in files:
        try:
            with Image.open(path) as im:
                im = im.convert("L" if gray else "RGB")
                im = im.resize((size, size), Image.Resampling.BILINEAR)
                arrays.append(np.asarray(im, dtype=np.uint8))
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds of errors
            raise _open_error(path, exc) from None
    if gray:
        return torch.from_numpy(np.stack(arrays)).unsqueeze(1)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def load(path: Path, split: str, size: int) -> ImageData:
    try:
        return _read_folder(path, split, size)
    except OSError as exc:  # a folder or file the user may not read
        where = exc.filename or path
        raise DataError(f"{where} cannot be read ({exc.strerror or exc}); check its permissions.") from None


@dataclass
class FolderListing:
    """One split of an image folder before decoding: files, labels, class names, channels."""

    files: list[Path]
    labels: np.ndarray | None
    classes: list[str] | None
    gray: bool
    name: str


def list_folder(path: Path, split: str) -> FolderListing:
    """The files of one split of ``folder:PATH`` (headers read, no image decoded)."""
    try:
        return _list_folder(path, split)
    except OSError as exc:  # a folder or file the user may not read
        where = exc.filename or path
        raise DataError(f"{where} cannot be read ({exc.strerror or exc}); check its permissions.") from None


def folder_decoded_bytes(listing: FolderListing, size: int) -> int:
    """Bytes of the split decoded as uint8 squares of ``size`` pixels."""
    return len(listing.files) * (1 if listing.gray else 3) * size * size


def _read_folder(path: Path, split: str, size: int) -> ImageData:
    listing = _list_folder(path, split)
    images = read_images(listing.files, size, listing.gray)
    return ImageData(
        images=images,
        labels=None if listing.labels is None else torch.from_numpy(listing.labels),
        classes=listing.classes,
        name=listing.name,
    )


def _list_folder(path: Path, split: str) -> FolderListing:
    path = path.expanduser().resolve()
    name = FOLDER_PREFIX + str(path)
    if not path.is_dir():
        raise DataError(
            f"The image folder {path} does not exist; create it and put the images there."
        )

    has_splits = (path / "train").is_dir() and (path / "test").is_dir()
    if has_splits:
        train_files, train_names = _scan_split(path / "train")
        test_files, test_names = _scan_split(path / "test")
        if (train_names is None) != (test_names is None):
            raise DataError(
                f"In {path} one of train/ and test/ has class sub-folders and the other does "
                "not; use class sub-folders in both or in neither."
            )
        files, names = (train_files, train_names) if split == "train" else (test_files, test_names)
        # One channel count for both splits: decided over every image of the dataset.
        gray = _all_gray(train_files + test_files)
        # Classes from both splits so that label numbers agree between them.
        classes = sorted(set(train_names) | set(test_names)) if train_names is not None else None
    else:
        files, names = _scan_split(path)
        classes = sorted(set(names)) if names is not None else None
        gray = _all_gray(files)

    labels = None
    if classes is not None:
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[n] for n in names], dtype=np.int64)

    if not has_splits:
        train_idx, test_idx = stratified_holdout(
            len(files), labels, FOLDER_TEST_FRACTION, SPLIT_SEED
        )
        keep = train_idx if split == "train" else test_idx
        if len(keep) == 0:
            raise DataError(
                f"{path} has too few images to hold out a {split} split; add images or "
                "provide train/ and test/ sub-folders."
            )
        files = [files[i] for i in keep]
        if labels is not None:
            labels = labels[keep]
    return FolderListing(files, labels, classes, gray, name)
