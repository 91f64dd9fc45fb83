"""Files follow the umask, as every other file in a shared run folder does."""

import os
import stat

import pytest

from nacvae.runs import CHECKPOINT
from tests.clitools import nacvae
from tests.faults.conftest import PRETRAIN_TINY


@pytest.fixture
def umask():
    def set_mask(mask):
        old = os.umask(mask)
        restore.append(old)
    restore = []
    yield set_mask
    for old in restore[:1]:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_run_files_and_exports_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    run, exported = tmp_path / "run", tmp_path / "backbone.pt"
    assert nacvae("pretrain", "--out", run, *PRETRAIN_TINY).exit_code == 0
    assert nacvae("export", "--run", run, "--out", exported).exit_code == 0
    want = 0o666 & ~mask
    for path in (run / "config.json", run / CHECKPOINT, run / "metrics.jsonl", run / ".lock", exported):
        assert stat.S_IMODE(path.stat().st_mode) == want, path
    assert stat.S_IMODE((run / "checkpoints").stat().st_mode) == 0o777 & ~mask
