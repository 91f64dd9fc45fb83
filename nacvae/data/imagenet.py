"""ImageNet-1K in the layout torchvision's ImageFolder reads, streamed.

``DIR/train/<wnid>/*.JPEG`` and ``DIR/val/<wnid>/*.JPEG``: one sub-folder per class (the
WordNet id), class numbers in sorted order of the train sub-folders. The ``test`` split is
``val``. Only the file names are listed; the images are decoded batch by batch
(``nacvae.data.stream``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from nacvae.data.stream import StreamedImages
from nacvae.errors import DataError

IMAGENET_SIZE = 224
SPLIT_FOLDERS = {"train": "train", "test": "val"}
_EXTENSIONS = (".jpeg", ".jpg", ".png")

_HOW_TO_GET = ("download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org, extract "
               "each training class's tar into train/<wnid>/ and move the validation images into val/<wnid>/ "
               "(the layout torchvision's ImageFolder reads)")


def _class_folders(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _files_of(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.path for e in entries
                      if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(_EXTENSIONS))


def load_imagenet(root: Path, split: str, size: int = IMAGENET_SIZE) -> StreamedImages:
    """The file list and labels of one ImageNet split under ``root``."""
    try:
        return _list(root.expanduser(), split, size)
    except OSError as exc:
        where = exc.filename or root
        raise DataError(f"{where} cannot be read ({exc.strerror or exc}); check its permissions.") from None


def _list(root: Path, split: str, size: int) -> StreamedImages:
    train_dir, split_dir = root / "train", root / SPLIT_FOLDERS[split]
    if not train_dir.is_dir() or not (root / "val").is_dir():
        raise DataError(f"ImageNet was not found in {root} (it needs train/ and val/ folders with one sub-folder "
                        f"per class); {_HOW_TO_GET}, and pass that folder as --data-dir.")
    classes = _class_folders(train_dir)
    if not classes:
        raise DataError(f"{train_dir} has no class sub-folders; {_HOW_TO_GET}.")
    index = {c: i for i, c in enumerate(classes)}
    names = _class_folders(split_dir)
    unknown = [n for n in names if n not in index]
    if unknown:
        raise DataError(f"{split_dir} has class folders that train/ lacks (for example {unknown[0]}); "
                        "use the same class folders in train/ and val/.")
    files: list[str] = []
    labels: list[int] = []
    for name in names:
        found = _files_of(split_dir / name)
        files.extend(found)
        labels.extend([index[name]] * len(found))
    if not files:
        raise DataError(f"{split_dir} holds no images (.JPEG, .jpg or .png) in its class folders; {_HOW_TO_GET}.")
    return StreamedImages(files, torch.tensor(labels, dtype=torch.int64), classes, "imagenet", size)
