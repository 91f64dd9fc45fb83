"""Streaming keeps memory flat: peak RSS while reading a whole ImageNet-layout folder does not
grow from 200 to 2,000 images (held in memory at 224 px the extra 1,800 images alone would
take 1,800 x 3 x 224 x 224 bytes = 271 MB; two views each, twice that)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.imagefiles import write_jpeg

# Reads every training batch (two 224-px views per image, decoded by two DataLoader workers)
# and prints the peak RSS in MiB of this process and of its largest worker.
PROBE = r"""
import resource, sys, torch
from nacvae.data.catalog import open_dataset
from nacvae.data.stream import train_batches
data = open_dataset("imagenet", "train", sys.argv[1])
order = list(range(len(data)))
keys = [[(0, i) for i in order[s:s + 32]] for s in range(0, len(order) - 31, 32)]
seen = sum(len(b) for b in train_batches(data, keys, 2, seed=0, workers=2, device=torch.device("cpu")))
assert seen == len(keys) * 32, seen
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(own, workers)
"""


def write_folder(root: Path, n: int) -> Path:
    for k in range(n):
        wnid = f"n{k % 4:08d}"
        write_jpeg(root / "train" / wnid / f"{k}.JPEG", 40 + k % 9, 30 + k % 7, seed=k, tint=k % 4)
    (root / "val").mkdir()
    return root


def peak_mib(folder: Path) -> tuple[float, float]:
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(folder)], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[2], timeout=600)
    assert out.returncode == 0, out.stderr
    own, workers = map(float, out.stdout.split())
    return own, workers


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_dataset(tmp_path):
    small = peak_mib(write_folder(tmp_path / "small", 200))
    large = peak_mib(write_folder(tmp_path / "large", 2000))
    # Allocator noise is a few MiB; the images alone would add hundreds.
    assert large[0] - small[0] < 25, (small, large)
    assert large[1] - small[1] < 25, (small, large)
