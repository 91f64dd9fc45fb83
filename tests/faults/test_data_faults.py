"""Data that cannot be read or fetched, and data too uniform to evaluate."""

import errno
import os
import pathlib

import numpy as np
from PIL import Image

from tests.clitools import assert_clean_failure, nacvae


def _pngs(folder, count):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(folder / f"{i:03d}.png")


def test_an_unreadable_image_folder(tmp_path, monkeypatch):
    images = tmp_path / "images"
    _pngs(images / "cats", 10)
    _pngs(images / "dogs", 10)
    locked = images / "dogs"
    if os.geteuid() == 0:  # root reads anything: refuse as the kernel would for a user
        listdir, scandir = pathlib.Path.iterdir, os.scandir

        def refuse(path):
            if isinstance(path, (str, os.PathLike)) and os.fspath(path) == str(locked):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(locked))

        monkeypatch.setattr(pathlib.Path, "iterdir", lambda self: (refuse(self), listdir(self))[1])
        monkeypatch.setattr(os, "scandir", lambda path=".": (refuse(path), scandir(path))[1])
    else:
        locked.chmod(0)
    out = tmp_path / "run"
    result = nacvae("pretrain", "--data", f"folder:{images}", "--out", out, "--steps", "1")
    locked.chmod(0o755)
    assert_clean_failure(result, f"{locked} cannot be read (Permission denied)")
    assert not out.exists()


def test_a_failed_download_leaves_no_folder(tmp_path, monkeypatch):
    import torchvision.datasets

    class Offline:
        def __init__(self, *args, **kwargs):
            raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    data_dir = tmp_path / "new" / "data"
    result = nacvae("pretrain", "--data", "cifar10", "--data-dir", data_dir, "--out", tmp_path / "run")
    assert_clean_failure(result, "could not be downloaded")
    assert not (tmp_path / "new").exists()
    assert not (tmp_path / "run").exists()


def test_retrieval_on_one_class_is_refused_like_the_linear_probe(tmp_path):
    one_class = tmp_path / "images"
    _pngs(one_class / "cats", 30)
    random = ["--init", "random", "--arch", "smallconv", "--data", f"folder:{one_class}"]
    assert_clean_failure(nacvae("eval", "retrieval", *random), "Retrieval needs at least 2 classes")
    assert_clean_failure(nacvae("eval", "linear", *random), "needs at least 2 classes")
