"""MIRFLICKR-25K as released, for multi-label retrieval, streamed.

Layout: ``DIR/mirflickr/im1.jpg ... im25000.jpg`` and
``DIR/mirflickr25k_annotations_v080/<concept>.txt``, one file per concept listing the
1-based numbers of the images that show it. The concept files without the ``_r1`` suffix
are the labels (24 in the release); the ``_r1`` files (the stricter "relevant" subsets)
and the README are not. Each image gets a 24-bit multi-hot label vector; images without
any label are dropped (about 20,000 remain), in increasing image number.

The retrieval split (``flickr_split``) is the one SSDH and DistillHash use: 2,000 random
queries, every other labelled image in the gallery, 5,000 random gallery images as the
unsupervised training set (docs/evaluation.md). The ``train`` split of the dataset is that
training set, the ``test`` split the queries (both with the split seed 0).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from nacvae.data.splits import random_retrieval_split
from nacvae.data.stream import StreamedImages
from nacvae.errors import DataError

FLICKR_SIZE = 224
IMAGES = "mirflickr"
ANNOTATIONS = "mirflickr25k_annotations_v080"
PAPER_QUERIES = 2000
PAPER_TRAIN = 5000
# Smaller sets (not the release): this fraction as queries, the whole gallery for training.
SMALL_QUERY_FRACTION = 0.1
_IMAGE_NAME = re.compile(r"im(\d+)\.jpg$")
_HOW_TO_GET = ("download mirflickr25k.zip and mirflickr25k_annotations_v080.zip from "
               "press.liacs.nl/mirflickr and extract both into that folder")


def _read_numbers(path: Path) -> list[int]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"Line {line_no} of {path} is not UTF-8 text; restore that file from the annotations "
                        "archive.") from None
    numbers = []
    for line_no, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        # str.isdigit() accepts digits such as '²' that int() refuses: only ASCII 0-9 are numbers.
        if not (line.isascii() and line.isdigit()) or int(line) < 1:
            raise DataError(f"Line {line_no} of {path} is not a positive image number; restore that file from "
                            "the annotations archive.")
        numbers.append(int(line))
    return numbers


def concept_files(folder: Path) -> list[Path]:
    """The label files: every .txt file but the ``_r1`` ones and the README, sorted by name."""
    found = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix == ".txt" and not p.stem.endswith("_r1")
                   and p.stem.lower() != "readme")
    return found


def load_flickr_labelled(root: Path, size: int = FLICKR_SIZE) -> StreamedImages:
    """Every labelled image of the release, with its multi-hot labels [N, 24] (uint8)."""
    try:
        return _labelled(root.expanduser(), size)
    except OSError as exc:
        where = exc.filename or root
        raise DataError(f"{where} cannot be read ({exc.strerror or exc}); check its permissions.") from None


def _labelled(root: Path, size: int) -> StreamedImages:
    images_dir, notes_dir = root / IMAGES, root / ANNOTATIONS
    if not images_dir.is_dir() or not notes_dir.is_dir():
        raise DataError(f"MIRFLICKR-25K was not found in {root} (it needs {IMAGES}/ and {ANNOTATIONS}/); "
                        f"{_HOW_TO_GET}, and pass it as --data-dir.")
    with os.scandir(images_dir) as entries:
        present = {int(m.group(1)): e.path for e in entries if (m := _IMAGE_NAME.match(e.name))}
    concepts = concept_files(notes_dir)
    if not concepts:
        raise DataError(f"{notes_dir} holds no concept files (<concept>.txt); {_HOW_TO_GET}.")
    numbers = sorted(present)
    row = {k: i for i, k in enumerate(numbers)}
    labels = np.zeros((len(numbers), len(concepts)), dtype=np.uint8)
    for c, path in enumerate(concepts):
        for k in _read_numbers(path):
            if k not in row:
                raise DataError(f"{path} lists image {k}, but {images_dir / f'im{k}.jpg'} does not exist; "
                                f"{_HOW_TO_GET}.")
            labels[row[k], c] = 1
    keep = np.flatnonzero(labels.any(axis=1))
    if len(keep) < 2:
        raise DataError(f"{root} has {len(keep)} labelled images; retrieval needs at least two.")
    files = [present[numbers[i]] for i in keep]
    return StreamedImages(files, torch.from_numpy(labels[keep]), [p.stem for p in concepts], "flickr25k", size)


def flickr_split_sizes(n: int) -> tuple[int, int | None]:
    """(queries, training images) for ``n`` labelled images: the paper's 2,000 and 5,000 when
    the set is large enough for both, else 10% queries (at least 1) and the whole gallery."""
    if n >= PAPER_QUERIES + PAPER_TRAIN:
        return PAPER_QUERIES, PAPER_TRAIN
    return max(1, int(n * SMALL_QUERY_FRACTION)), None


def flickr_split(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    queries, train = flickr_split_sizes(n)
    return random_retrieval_split(n, queries, train, seed)


def load_flickr(root: Path, split: str, size: int = FLICKR_SIZE) -> StreamedImages:
    """``train``: the retrieval split's training images; ``test``: its queries (seed 0)."""
    pool = load_flickr_labelled(root, size)
    parts = flickr_split(len(pool), seed=0)
    return pool.subset(parts["train" if split == "train" else "query"])
