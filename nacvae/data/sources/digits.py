"""The digits bundled with scikit-learn: 1,797 8x8 grayscale images with values 0..16,
read by ``sklearn.datasets.load_digits`` from scikit-learn's own data files, so nothing
is read from ``data_dir`` or downloaded. Values are scaled to uint8 0..255 and a fixed
stratified fifth is held out as the test split, since the dataset comes with none.
"""

from __future__ import annotations

import numpy as np
import torch

from nacvae.data.sources.imagedata import SPLIT_SEED, ImageData, stratified_holdout

__all__ = ["DIGITS_TEST_FRACTION", "load"]

DIGITS_TEST_FRACTION = 0.2


def load(split: str) -> ImageData:
    # sklearn is imported only when digits are asked for.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    values = np.asarray(bunch.images, dtype=np.float64)  # [N, 8, 8], 0..16
    images = np.rint(values * 255.0 / 16.0).astype(np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)
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
