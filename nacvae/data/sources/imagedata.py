"""What the in-memory sources share; it reads no dataset itself. ``ImageData`` is a whole
split as a uint8 tensor [N, C, H, W] with optional int64 labels; ``compute_stats`` gives
its per-channel mean and std, ``resize_uint8`` resizes it, ``stratified_holdout`` carves
a fixed test split out of a dataset that comes without one (digits, image folders), and
``download_into`` runs a torchvision download in a temporary folder inside ``data_dir``
and moves its files into place only once it has succeeded.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nacvae.files import make_dirs, remove_dirs

__all__ = [
    "DOWNLOAD_TIMEOUT_S",
    "SPLIT_SEED",
    "ImageData",
    "compute_stats",
    "download_into",
    "resize_uint8",
    "stratified_holdout",
]

DOWNLOAD_TIMEOUT_S = 15.0
SPLIT_SEED = 0


@dataclass
class ImageData:
    """A whole split in memory: uint8 images [N, C, H, W] and optional int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor | None
    classes: list[str] | None
    name: str

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError("images must be a uint8 tensor of shape [N, C, H, W]")
        if self.images.shape[1] not in (1, 3):
            raise ValueError("images must have 1 or 3 channels")
        if self.labels is not None:
            if self.labels.dtype != torch.int64 or self.labels.shape != (len(self.images),):
                raise ValueError("labels must be an int64 tensor of shape [N]")

    @property
    def num_classes(self) -> int | None:
        return None if self.classes is None else len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    def __len__(self) -> int:
        return int(self.images.shape[0])


def compute_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    # Chunked so that a float64 copy of a large dataset is never made at once.
    for chunk in images.split(4096):
        x = chunk.to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
    count = images.numel() // c
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    out = []
    for chunk in images.split(4096):
        x = F.interpolate(
            chunk.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def stratified_holdout(
    n: int, labels: np.ndarray | None, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices; stratified by label when labels are given."""
    rng = np.random.default_rng(seed)
    if labels is None:
        groups = [np.arange(n)]
    else:
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    test = []
    for idx in groups:
        k = int(round(fraction * len(idx)))
        test.append(rng.permutation(idx)[:k])
    test_idx = np.concatenate(test) if test else np.zeros(0, dtype=np.int64)
    if len(test_idx) == 0 and n >= 2:
        test_idx = rng.permutation(n)[:1]
    mask = np.zeros(n, dtype=bool)
    mask[test_idx] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def download_into(root: Path, fetch, produced: str) -> bool:
    """Run ``fetch(tmpdir)`` and move the folder ``tmpdir/produced`` into ``root``.

    Everything happens in a temporary folder inside ``root`` so that a failed or
    interrupted download leaves nothing half-written behind. Returns success.
    """
    created: list[Path] = []
    try:
        created = make_dirs(root)
        with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                fetch(tmp)
            src = Path(tmp) / produced
            dst = root / produced
            dst.mkdir(parents=True, exist_ok=True)
            for f in src.iterdir():
                if f.is_file():
                    os.replace(f, dst / f.name)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not available"
        remove_dirs(created)  # a folder made only for this download goes again
        return False
