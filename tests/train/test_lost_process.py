"""A process of a multi-process job that dies or hangs mid-training.

The survivor must end with one sentence naming the lost rank and the resume command, exit
code 2, and the same sentence in torchrun's error file, instead of the backend's traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch.distributed as dist

from tests.train.test_distributed import launch_env, free_port

ROOT = Path(__file__).resolve().parents[2]

# Rank 1 dies (os._exit, as after kill -9) or hangs (as after SIGSTOP) at its third step,
# after the checkpoint of step 2 (1438 // 512 = 2 steps an epoch).
DRIVER = """
import os, sys, time
from nacvae.train import pretrain as loop
how = sys.argv[1]
if os.environ["RANK"] == "1":
    real, calls = loop.train_step, [0]
    def fails_at_step_3(*args):
        calls[0] += 1
        if calls[0] == 3:
            if how == "dies":
                os._exit(9)
            time.sleep(600)
        return real(*args)
    loop.train_step = fails_at_step_3
from nacvae.cli.main import main
sys.argv = ["nacvae", *sys.argv[2:]]
main()
"""

OPTIONS = ["pretrain", "--epochs", "3", "--batch-size", "512", "--code-dim", "8", "--warmup-steps", "1",
           "--device", "cpu", "--quiet"]


def run_job(tmp_path: Path, how: str, *options: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """Both processes on loopback; returns rank 0's result, the run folder, its error file."""
    out, port = tmp_path / "run", free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, **launch_env(rank, port), TORCHELASTIC_ERROR_FILE=str(tmp_path / f"error-{rank}.json"))
        procs.append(subprocess.Popen([sys.executable, "-c", DRIVER, how, *OPTIONS, "--out", str(out), *options],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT))
    try:
        stdout, stderr = procs[0].communicate(timeout=120)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    return subprocess.CompletedProcess(procs[0].args, procs[0].returncode, stdout, stderr), out, \
        tmp_path / "error-0.json"


def check_survivor(result, out: Path, error_file: Path, what: str) -> None:
    from nacvae.runs import CHECKPOINT, read_config

    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    sentence = lines[0]
    assert sentence.startswith(f"Error: Rank 1 of the 2 processes {what}"), sentence
    assert sentence.endswith(f"`torchrun ... -m nacvae pretrain --out {out} --resume`."), sentence
    assert json.loads(error_file.read_text())["message"]["message"] == sentence
    assert read_config(out)["status"] == "failed" and (out / CHECKPOINT).is_file()


def test_survivor_of_a_killed_process_says_so_and_how_to_resume(tmp_path):
    result, out, error_file = run_job(tmp_path, "dies")
    check_survivor(result, out, error_file, "was lost (it was killed, or its machine or network failed)")


@pytest.mark.slow
def test_survivor_of_a_hung_process_says_so_after_the_timeout(tmp_path):
    start = time.monotonic()
    result, out, error_file = run_job(tmp_path, "hangs", "--dist-timeout", "0.15")
    check_survivor(result, out, error_file, "did not answer for 0.15 minutes (--dist-timeout)")
    assert time.monotonic() - start < 60


# ------------------------------------------------------------ the translation, in-process


@pytest.fixture
def two_processes(monkeypatch):
    """What the translation sees inside rank 0 of a group of ``size`` processes."""
    from nacvae import distributed

    def group(size: int = 2, rank: int = 0) -> None:
        monkeypatch.setattr(distributed, "is_distributed", lambda: True)
        monkeypatch.setattr(dist, "get_world_size", lambda group=None: size)
        monkeypatch.setattr(dist, "get_rank", lambda group=None: rank)
    group()
    return group


GLOO_RESET = RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error "
                          "[127.0.0.1]:10142: Connection reset by peer. This is typically caused by a remote "
                          "worker hanging or bugs in the application.")
GLOO_TIMEOUT = RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] "
                            "Timed out waiting 30000ms for recv operation to complete")


def translated(exc: BaseException, next_step: str = "continue it with --resume") -> BaseException:
    from nacvae import distributed

    try:
        with distributed.lost_processes_as_error(timedelta(minutes=0.5), lambda: next_step):
            raise exc
    except BaseException as caught:  # noqa: B902 - what leaves the block is the point
        return caught
    raise AssertionError("nothing raised")


@pytest.mark.parametrize("exc, sentence", [
    (GLOO_RESET, "Rank 1 of the 2 processes was lost (it was killed, or its machine or network failed), so "
                 "training stopped; continue it with --resume."),
    (RuntimeError("Connection closed by peer [127.0.0.1]:4567"), "Rank 1 of the 2 processes was lost"),
    (dist.DistBackendError("NCCL error in: ProcessGroupNCCL.cpp:1935, remote process exited or there was a "
                           "network error"), "Rank 1 of the 2 processes was lost"),
    (GLOO_TIMEOUT, "Rank 1 of the 2 processes did not answer for 0.5 minutes (--dist-timeout), so training"),
    (dist.DistBackendError("Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7, OpType=ALLREDUCE)"),
     "did not answer for 0.5 minutes"),
])
def test_backend_errors_become_one_sentence(two_processes, exc, sentence):
    from nacvae.distributed import ProcessLost
    from nacvae.errors import TrainingError

    got = translated(exc)
    assert isinstance(got, ProcessLost) and isinstance(got, TrainingError)
    assert sentence in str(got) and str(got).endswith(".") and got.__cause__ is exc


def test_the_lost_rank_is_named_only_when_it_is_known(two_processes):
    two_processes(rank=1)
    assert str(translated(GLOO_RESET)).startswith("Rank 0 of the 2 processes was lost")
    two_processes(size=4)
    assert str(translated(GLOO_RESET)).startswith("Another process of the job was lost")


@pytest.mark.parametrize("exc", [RuntimeError("mat1 and mat2 shapes cannot be multiplied"), ValueError("nccl"),
                                 KeyboardInterrupt()])
def test_other_errors_pass_unchanged(two_processes, exc):
    assert translated(exc) is exc


def test_a_single_process_is_never_told_of_a_lost_one():
    assert translated(GLOO_RESET) is GLOO_RESET


def test_the_cli_reports_it_on_every_rank_and_to_torchrun(two_processes, monkeypatch, tmp_path):
    """Rank 0 may be the lost process: a survivor of another rank prints the sentence too."""
    from nacvae.distributed import ProcessLost
    from nacvae.train import pretrain as loop
    from tests.clitools import assert_clean_failure, nacvae

    error_file = tmp_path / "error.json"
    for name, value in dict(RANK="1", LOCAL_RANK="1", WORLD_SIZE="2", TORCHELASTIC_ERROR_FILE=str(error_file)).items():
        monkeypatch.setenv(name, value)

    def lost(*args, **kwargs):
        raise ProcessLost("Rank 0 of the 2 processes was lost, so training stopped.")

    monkeypatch.setattr(loop, "pretrain", lost)
    result = nacvae("pretrain", "--out", tmp_path / "run", "--quiet")
    assert_clean_failure(result, "Rank 0 of the 2 processes was lost")
    assert json.loads(error_file.read_text())["message"]["message"] == result.stderr.strip()


def test_after_a_lost_process_the_advice_depends_on_the_checkpoint(tmp_path):
    from nacvae.runs import CHECKPOINT
    from nacvae.train.pretrain import _after_lost_process

    out = tmp_path / "my run"
    assert _after_lost_process(out).startswith("nothing had been trained yet")
    (out / CHECKPOINT).parent.mkdir(parents=True)
    (out / CHECKPOINT).write_bytes(b"")
    assert _after_lost_process(out).endswith(f"`torchrun ... -m nacvae pretrain --out '{out}' --resume`")
