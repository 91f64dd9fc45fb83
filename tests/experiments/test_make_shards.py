"""experiments/make_shards.py writes WebDataset shards that ``--data webdataset:`` trains on."""

import sys
import tarfile
from pathlib import Path

import pytest

from nacvae.runs import read_config
from tests.clitools import assert_clean_failure, nacvae
from tests.imagefiles import make_imagenet

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from make_shards import write_shards

    root = make_imagenet(tmp_path_factory.mktemp("images"), train_per_class=5, val_per_class=0,
                         classes=("a", "b"))
    return write_shards(root / "train", tmp_path_factory.mktemp("shards"), per_shard=4, seed=0)


def test_shards_hold_every_image_once_with_its_class(shards):
    assert shards.endswith("shard-{000000..000002}.tar")
    members = []
    for k in range(3):
        with tarfile.open(shards.replace("{000000..000002}", f"{k:06d}")) as tar:
            members += tar.getnames()
    keys = {m.split(".")[0] for m in members}
    assert len(keys) == 10 and sum(m.endswith(".jpg") for m in members) == 10
    assert sum(m.endswith(".cls") for m in members) == 10


def test_pretrain_from_shards(shards, tmp_path):
    out = tmp_path / "run"
    result = nacvae("pretrain", "--data", f"webdataset:{shards}", "--arch", "smallconv", "--image-size", "32",
                    "--batch-size", "4", "--epochs", "2", "--code-dim", "8", "--workers", "2", "--out", out,
                    "--quiet")
    assert result.exit_code == 0, result.output
    config = read_config(out)
    # 10 images in 3 shards, batch 4: two steps per epoch
    assert config["status"] == "complete" and config["steps_per_epoch"] == 2 and config["total_steps"] == 4
    assert config["image_shape"] == [3, 32, 32]


def test_missing_shards_are_one_sentence(tmp_path):
    result = nacvae("pretrain", "--data", f"webdataset:{tmp_path}/shard-{{0..1}}.tar", "--out", tmp_path / "r",
                    "--quiet")
    assert_clean_failure(result, "does not exist")


def test_each_process_reads_its_own_shards(shards):
    """Two torchrun processes: every image is read by exactly one of them in an epoch."""
    import torch

    from nacvae.data.catalog import open_dataset
    from nacvae.data.shards import _epoch_loader

    stream = open_dataset(f"webdataset:{shards}", image_size=32)
    assert len(stream) == 10
    seen = []
    for rank in (0, 1):
        loader = _epoch_loader(stream, epoch=0, per_rank=1, seed=0, workers=2, rank=rank, world=2,
                               device=torch.device("cpu"))
        seen.append([batch[0, 0].sum().item() for batch, _ in loader])  # one number per image read
    assert len(seen[0]) + len(seen[1]) == 10 and seen[0] and seen[1]


def test_default_workers_share_the_cores_among_processes(monkeypatch):
    import os

    from nacvae.data.stream import default_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_workers() == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert default_workers() == 1
