"""Small image datasets written as real files, in the layouts nacvae reads."""

from pathlib import Path

import numpy as np

SIZES = ((40, 30), (33, 47), (64, 64), (52, 36))
FLICKR_CONCEPTS = ("animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor", "lake",
                   "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky", "structures",
                   "sunset", "transport", "tree", "water")


def write_jpeg(path: Path, width: int, height: int, seed: int, tint: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    a[..., tint % 3] = 40 + 60 * (tint % 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, format="JPEG", quality=80)


def make_imagenet(root: Path, train_per_class: int = 3, val_per_class: int = 2,
                  classes=("n01440764", "n01443537")) -> Path:
    """``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` of several sizes."""
    seed = 0
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for c, wnid in enumerate(classes):
            for k in range(count):
                w, h = SIZES[(k + c) % len(SIZES)]
                write_jpeg(root / split / wnid / f"{wnid}_{k}.JPEG", w, h, seed, tint=c)
                seed += 1
    return root


def make_mirflickr(root: Path, labels: np.ndarray) -> Path:
    """The MIRFLICKR-25K release layout for images 1..N with the given 0/1 labels [N, 24]:
    the JPEGs, one concept file per label, ``_r1`` files and a README (which are no labels)."""
    n = len(labels)
    for k in range(1, n + 1):
        w, h = SIZES[k % len(SIZES)]
        write_jpeg(root / "mirflickr" / f"im{k}.jpg", w, h, seed=k, tint=int(labels[k - 1].argmax()))
    notes = root / "mirflickr25k_annotations_v080"
    notes.mkdir(parents=True, exist_ok=True)
    for c, name in enumerate(FLICKR_CONCEPTS):
        members = [str(k + 1) for k in np.flatnonzero(labels[:, c])]
        (notes / f"{name}.txt").write_text("".join(m + "\n" for m in members))
        # The "relevant" subsets list other images on purpose: they must not become labels.
        (notes / f"{name}_r1.txt").write_text("".join(f"{k}\n" for k in range(1, n + 1)))
    (notes / "README.txt").write_text("MIRFLICKR-25K annotations\n1\n2\n")
    return root
