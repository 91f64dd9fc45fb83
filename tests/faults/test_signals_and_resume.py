"""SIGTERM stops a run as Ctrl-C does; Ctrl-C while starting prints no traceback; --resume
refuses options that would change the run."""

import json
import signal
import time

import pytest

from nacvae.runs import CHECKPOINT, CONFIG
from tests.clitools import assert_clean_failure, nacvae
from tests.faults.conftest import popen_cli


def _wait_for(path, timeout=120.0):
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_sigterm_marks_the_run_interrupted(tmp_path):
    run = tmp_path / "run"
    proc = popen_cli("pretrain", "--out", run, "--steps", "2000", "--batch-size", "128", "--code-dim", "8", "--quiet")
    _wait_for(run / CHECKPOINT)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip() == "Terminated."
    assert json.loads((run / CONFIG).read_text())["status"] == "interrupted"


@pytest.mark.parametrize("delay", [0.3, 1.5])
def test_ctrl_c_while_starting_prints_no_traceback(tmp_path, delay):
    run = tmp_path / "run"
    proc = popen_cli("pretrain", "--out", run, "--steps", "2000", "--quiet")
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert proc.returncode in (130, 1, -signal.SIGINT), err  # 1: click's "Aborted!" while parsing
    if not (run / CHECKPOINT).exists():
        assert not run.exists()  # nothing trained, nothing left


def test_resume_refuses_a_changed_schedule(pretrain_run, vae_run, copy_run):
    run = copy_run(pretrain_run)
    saved = json.loads((run / CONFIG).read_text())
    assert_clean_failure(nacvae("pretrain", "--out", run, "--resume", "--epochs", "8"),
                         "--resume continues")
    assert_clean_failure(nacvae("pretrain", "--out", run, "--resume", "--steps", "9"), "--steps 9 cannot be given")
    assert_clean_failure(nacvae("pretrain", "--out", run, "--resume", "--lr", "0.5"), "(--lr 3.0)")
    assert json.loads((run / CONFIG).read_text()) == saved
    # The values it was started with may be repeated.
    again = nacvae("pretrain", "--out", run, "--resume", "--epochs", "2", "--batch-size", "512", "--quiet")
    assert again.exit_code == 0, again.output
    vae = copy_run(vae_run)
    assert_clean_failure(nacvae("vae", "--out", vae, "--resume", "--epochs", "8"), "(--epochs 1), so --epochs 8")
    assert_clean_failure(nacvae("vae", "--out", vae, "--resume", "--data", "fashion-mnist"), "--data 'fashion-mnist'")


def test_a_ctrl_c_swallowed_while_starting_still_stops_the_run(tmp_path, monkeypatch):
    """A library that catches the KeyboardInterrupt (as numpy's import can) does not make
    nacvae train on: the loop stops at its first step and nothing is left behind."""
    from nacvae import interrupts

    monkeypatch.setattr(interrupts, "_pending", False)
    try:
        interrupts.on_sigint(signal.SIGINT, None)
    except KeyboardInterrupt:
        pass  # swallowed, as inside a C extension's import
    run = tmp_path / "run"
    result = nacvae("pretrain", "--out", run, "--steps", "50", "--quiet")
    assert result.exit_code == 130, result.output
    assert result.stderr.strip() == "Interrupted."
    assert not run.exists()
