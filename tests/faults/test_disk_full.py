"""A full disk: one sentence saying so and where, the previous checkpoint intact, the run
marked failed (or removed when nothing was trained), and no temporary files."""

import json
import subprocess

import pytest

from nacvae.checkpoint import load_checkpoint
from nacvae.files import atomic_write, write_text
from nacvae.errors import StorageError
from nacvae.runs import CHECKPOINT, CONFIG, read_config, read_metrics
from tests.clitools import assert_clean_failure, nacvae
from tests.faults.conftest import PRETRAIN_TINY, VAE_TINY, no_temporary_files


def test_the_writer_keeps_the_previous_file(tmp_path, full_disk):
    path = tmp_path / "config.json"
    write_text(path, "old\n")
    full_disk("config.json")
    with pytest.raises(StorageError, match=f"The disk is full: {path} could not be written"):
        write_text(path, "new\n")
    assert path.read_text() == "old\n" and no_temporary_files(tmp_path)


def test_a_failed_write_leaves_nothing(tmp_path):
    import errno

    def fill_up(f):
        f.write(b"x" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StorageError, match="The disk is full"):
        atomic_write(tmp_path / "new" / "a.pt", fill_up)
    assert list(tmp_path.iterdir()) == []  # neither the file nor the folder made for it


@pytest.mark.parametrize("command,args", [("pretrain", PRETRAIN_TINY), ("vae", VAE_TINY)])
def test_training_stops_with_its_last_checkpoint_intact(tmp_path, full_disk, command, args):
    run = tmp_path / "run"
    full_disk("last.pt", after=1)  # the first checkpoint fits, the next does not
    result = nacvae(command, "--out", run, *args, "--epochs", "3")
    assert_clean_failure(result, f"The disk holding {run} is full; the last checkpoint (step ")
    assert "continue it with --resume" in result.stderr
    ckpt = load_checkpoint(run / CHECKPOINT)
    assert ckpt["step"] > 0 and not ckpt["complete"]
    assert read_config(run)["status"] == "failed"
    assert no_temporary_files(run)


def test_a_disk_full_before_anything_was_trained_removes_the_run(tmp_path, full_disk):
    run = tmp_path / "run"
    full_disk("last.pt")
    result = nacvae("pretrain", "--out", run, *PRETRAIN_TINY)
    assert_clean_failure(result, f"The disk holding {run} is full; nothing had been trained yet")
    assert not run.exists()


def test_a_metrics_line_cut_by_a_full_disk_fails_cleanly(tmp_path, full_disk):
    run = tmp_path / "run"
    full_disk("metrics.jsonl")
    result = nacvae("pretrain", "--out", run, *PRETRAIN_TINY, "--epochs", "6")
    assert_clean_failure(result, f"The disk holding {run} is full")


def test_export_and_eval_outputs(tmp_path, pretrain_run, vae_run, copy_run, full_disk):
    run = copy_run(pretrain_run)
    full_disk("backbone.pt")
    out = tmp_path / "backbone.pt"
    assert_clean_failure(nacvae("export", "--run", run, "--out", out), f"The disk is full: {out} could not be written")
    assert not out.exists() and no_temporary_files(tmp_path)
    before = read_metrics(run)
    full_disk("metrics.jsonl")
    # An evaluation prints its result all the same, and says that the run did not record it.
    result = nacvae("eval", "codes", "--run", run)
    assert result.exit_code == 0 and "distinct codewords" in result.stdout
    assert result.stderr == f"The result was not recorded in {run}: the disk is full: {run / 'metrics.jsonl'} " \
                            f"could not be written in {run}.\n"
    assert read_metrics(run) == before  # the half-written line is not a record
    vae = copy_run(vae_run)
    result = nacvae("eval", "loglik", "--run", vae, "--samples", "2", "--num-images", "4")
    assert result.exit_code == 0 and "log-likelihood" in result.stdout and "the disk is full" in result.stderr


def _mount_tmpfs(path, size):
    path.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        done = None
    if done is None or done.returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")


def test_a_real_small_disk(tmp_path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "7m")  # room for one checkpoint of the default digits encoder, not two
    try:
        run = disk / "run"
        result = nacvae("pretrain", "--out", run, "--steps", "30", "--warmup-steps", "1", "--quiet")
        assert_clean_failure(result, f"The disk holding {run} is full; the last checkpoint (step 11) is intact")
        assert load_checkpoint(run / CHECKPOINT)["step"] == 11
        assert json.loads((run / CONFIG).read_text())["status"] == "failed"
        assert no_temporary_files(run)  # torch.save's own error carried the errno out
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
