"""The digits bundled with scikit-learn: 1,797 8x8 grayscale images with values 0..16,
read from scikit-learn's own data file, so nothing is read from ``data_dir`` or
downloaded. Values are scaled to uint8 0..255 and a fixed stratified fifth is held out as
the test split, since the dataset comes with none.

The file is read directly, without importing scikit-learn (over a second: most of a quick
evaluation's start-up); should its location or layout ever change, ``load_digits`` reads it.
"""

from __future__ import annotations

import numpy as np
import torch

from nacvae.data.sources.imagedata import SPLIT_SEED, ImageData, stratified_holdout

__all__ = ["DIGITS_TEST_FRACTION", "load"]

DIGITS_TEST_FRACTION = 0.2


DIGITS_COUNT = 1797


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(values [1797, 8, 8] float64 in 0..16, labels [1797] int64), as ``load_digits`` gives them."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
        try:
            data = np.loadtxt(path, delimiter=",")
        except (OSError, ValueError):
            data = None
        if data is not None and data.shape == (DIGITS_COUNT, 65):
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def load(split: str) -> ImageData:
    values, labels = digits_arrays()  # [N, 8, 8], 0..16
    images = np.rint(values * 255.0 / 16.0).astype(np.uint8)
    train_idx, test_idx = stratified_holdout(
        len(labels), labels, DIGITS_TEST_FRACTION, SPLIT_SEED
    )
    idx = train_idx if split == "train" else test_idx
    return ImageData(
        images=torch.from_numpy(images[idx]).unsqueeze(1).contiguous(),
        labels=torch.from_numpy(labels[idx]),
        classes=[str(d) for d in range(10)],
        name="digits",
    )
