"""One process per run folder: an OS lock that a second process meets, and that dies with
the process holding it."""

import os
import signal
import subprocess
import sys
import pytest

from nacvae.errors import ConfigError
from nacvae.files import LOCK_NAME, FolderLock
from nacvae.runs import CHECKPOINT, read_metrics
from tests.clitools import assert_clean_failure, nacvae
from tests.faults.conftest import PRETRAIN_TINY, VAE_TINY, popen_cli


def test_a_held_folder_is_refused_naming_the_holder(tmp_path, pretrain_run, vae_run, copy_run):
    pid = f"process {os.getpid()}"
    new = tmp_path / "new"
    new.mkdir()
    pretrain, vae = copy_run(pretrain_run), copy_run(vae_run)
    with FolderLock(new).acquire(), FolderLock(pretrain).acquire(), FolderLock(vae).acquire():
        assert_clean_failure(nacvae("pretrain", "--out", new, *PRETRAIN_TINY), pid)
        assert_clean_failure(nacvae("pretrain", "--out", pretrain, "--resume", "--quiet"), pid)
        assert_clean_failure(nacvae("vae", "--out", new, *VAE_TINY), pid)
        assert_clean_failure(nacvae("vae", "--out", vae, "--resume", "--quiet"), pid)
    # Nothing was written while the folders were held: the new one holds only the lock.
    assert [p.name for p in new.iterdir()] == [LOCK_NAME]
    # Released: the same commands work.
    assert nacvae("pretrain", "--out", pretrain, "--resume", "--quiet").exit_code == 0


def test_a_study_seed_is_refused_while_another_process_runs_it(tmp_path):
    study = tmp_path / "study"
    (study / "seed-0").mkdir(parents=True)
    with FolderLock(study / "seed-0").acquire():
        result = nacvae("reproduce", "--out", study, "--resume", "--seed", "0", "--quiet")
    assert_clean_failure(result, f"seed folder {study / 'seed-0'} is in use by nacvae process {os.getpid()}")


def test_the_lock_dies_with_a_killed_process(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from nacvae.files import FolderLock; "
         f"FolderLock({str(folder)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(ConfigError, match=f"in use by nacvae process {holder.pid}"):
        FolderLock(folder).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    FolderLock(folder).acquire().release()  # no stale lock


@pytest.mark.slow  # two fresh processes: half a minute on a busy 2-core machine
def test_two_runs_started_together_do_not_share_a_folder(tmp_path):
    run = tmp_path / "run"
    args = ("pretrain", "--out", run, "--steps", "12", "--batch-size", "128", "--code-dim", "8", "--quiet")
    first, second = popen_cli(*args), popen_cli(*args)
    results = [(p.wait(timeout=180), p.stderr.read()) for p in (first, second)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refusal = next(err for code, err in results if code == 2)
    assert "Traceback" not in refusal
    assert "is in use by nacvae process" in refusal or "already used" in refusal, refusal
    steps = [r["step"] for r in read_metrics(run) if r["event"] == "train"]
    assert steps == sorted(set(steps))  # one writer's records only
    assert len(list((run / "tb").iterdir())) == 1
    assert (run / CHECKPOINT).is_file()


def test_a_lock_file_does_not_make_a_folder_used(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    FolderLock(folder).acquire().release()  # leaves .lock behind
    assert nacvae("pretrain", "--out", folder, *PRETRAIN_TINY).exit_code == 0
