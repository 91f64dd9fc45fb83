"""CIFAR-10: the python version as torchvision extracts it, the folder
``data_dir/cifar-10-batches-py`` holding the pickled batches ``data_batch_1`` ..
``data_batch_5`` (train), ``test_batch`` and ``batches.meta`` (the label names). Each
batch is a dict whose ``data`` is a uint8 array of 3,072-byte rows (1,024 red, then green,
then blue values of a 32x32 image) and whose ``labels`` is a list; the pickles are read
with an unpickler that allows only what numpy needs to rebuild an array, so a tampered
file cannot run code. When the folder is incomplete and a download is allowed,
torchvision fetches and extracts ``cifar-10-python.tar.gz`` into ``data_dir``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from nacvae.data.sources.imagedata import ImageData, download_into
from nacvae.errors import DataError

__all__ = ["load"]

_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_BATCHES = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}
_CIFAR_META = "batches.meta"


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy uint8 arrays, lists, dicts and strings.

    The batches are pickles, and a plain pickle.load would run any code a tampered
    file names; only the globals numpy needs to rebuild an array are allowed here.
    """

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            # Pickles from numpy 1.x name numpy.core, a deprecated alias in numpy 2.
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _BatchUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - pickle raises many kinds of errors
        raise DataError(
            f"{path} is not a valid CIFAR-10 batch ({type(exc).__name__}); "
            "download cifar-10-python.tar.gz again and re-extract it."
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a valid CIFAR-10 batch; download and extract it again.")
    return obj


def _cifar_complete(folder: Path, split: str) -> bool:
    names = _CIFAR_BATCHES[split] + [_CIFAR_META]
    return all((folder / n).is_file() for n in names)


def load(root: Path, split: str, download: bool) -> ImageData:
    folder = root / _CIFAR_FOLDER
    if not _cifar_complete(folder, split):
        ok = False
        if download:

            def fetch(tmp: str) -> None:
                # torchvision is imported only for a download.
                from torchvision.datasets import CIFAR10

                CIFAR10(root=tmp, train=True, download=True)

            ok = download_into(root, fetch, _CIFAR_FOLDER) and _cifar_complete(folder, split)
        if not ok:
            raise DataError(
                f"CIFAR-10 was not found in {folder}"
                + (" and could not be downloaded" if download else "")
                + "; download cifar-10-python.tar.gz and extract it there."
            )

    meta = _read_cifar_pickle(folder / _CIFAR_META)
    names = meta.get(b"label_names")
    if not isinstance(names, list) or not all(isinstance(n, bytes) for n in names):
        raise DataError(
            f"{folder / _CIFAR_META} has no list of label names; download and extract it again."
        )
    classes = [n.decode("utf-8") for n in names]

    images, labels = [], []
    for batch_name in _CIFAR_BATCHES[split]:
        path = folder / batch_name
        batch = _read_cifar_pickle(path)
        data, lab = batch.get(b"data"), batch.get(b"labels")
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != 3 * 32 * 32
            or lab is None
            or len(lab) != data.shape[0]
        ):
            raise DataError(
                f"{path} does not hold uint8 image rows of 3072 bytes with one label each; "
                "download and extract CIFAR-10 again."
            )
        lab = np.asarray(lab, dtype=np.int64)
        if lab.size and (lab.min() < 0 or lab.max() >= len(classes)):
            raise DataError(
                f"{path} holds labels outside 0..{len(classes) - 1}; extract CIFAR-10 again."
            )
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return ImageData(
        images=torch.from_numpy(np.concatenate(images)),
        labels=torch.from_numpy(np.concatenate(labels)),
        classes=classes,
        name="cifar10",
    )
