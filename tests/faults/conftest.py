"""Shared pieces of the fault tests: tiny runs, and a disk that fills up on demand."""

import errno
import json
import os
import signal
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nacvae import files
from nacvae.runs import CONFIG
from tests.clitools import nacvae

# 1438 // 512 = 2 steps per epoch: a checkpoint after step 2, the end at step 4.
PRETRAIN_TINY = ["--epochs", "2", "--batch-size", "512", "--code-dim", "8", "--warmup-steps", "1", "--quiet"]
VAE_TINY = ["--init", "random", "--epochs", "1", "--batch-size", "512", "--latent-dim", "2", "--quiet"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def pretrain_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("faults") / "pretrain"
    result = nacvae("pretrain", "--out", run, *PRETRAIN_TINY)
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture(scope="package")
def vae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("faults") / "vae"
    result = nacvae("vae", "--out", run, *VAE_TINY)
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def copy_run(tmp_path):
    """A private copy of a shared run, free to damage."""
    def copy(run: Path, name: str | None = None) -> Path:
        target = tmp_path / (name or run.name)
        shutil.copytree(run, target)
        return target
    return copy


def edit_config(run: Path, change) -> None:
    path = run / CONFIG
    value = change(json.loads(path.read_text()))
    path.write_text(json.dumps(value))


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(name, after=n)``: writing a file called ``name`` fails with ENOSPC, as on
    a full disk, once ``n`` such writes have succeeded; appending to it too."""
    def fill(name: str, after: int = 0) -> None:
        create, append = files._create_temp, files._append
        count = {"n": 0}

        def create_temp(path):
            if Path(path).name == name:
                count["n"] += 1
                if count["n"] > after:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            return create(path)

        def append_bytes(fd, data):
            if os.readlink(f"/proc/self/fd/{fd}").endswith("/" + name):
                os.write(fd, data[: len(data) // 2])  # what a disk filling mid-write leaves
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return append(fd, data)

        monkeypatch.setattr(files, "_create_temp", create_temp)
        monkeypatch.setattr(files, "_append", append_bytes)
    return fill


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*.tmp")]


def run_cli(*args, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    """``python -m nacvae ARGS`` in a fresh process, one thread."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "nacvae", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT, **kwargs)


def _default_sigint() -> None:
    # A shell's background job inherits an ignored SIGINT, which Python (and nacvae) keeps.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen_cli(*args) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "nacvae", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, preexec_fn=_default_sigint)
