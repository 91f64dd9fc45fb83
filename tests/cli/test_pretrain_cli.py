"""``nacvae pretrain`` through the real console entry point: help, version, bad input."""

import subprocess
import sys

import pytest
import torch

from nacvae.checkpoint import save_checkpoint
from nacvae.runs import CHECKPOINT
from tests.clitools import assert_clean_failure, nacvae


def test_console_entry_point_help_and_version():
    top = subprocess.run([sys.executable, "-m", "nacvae", "--help"], capture_output=True, text=True)
    assert top.returncode == 0 and "pretrain" in top.stdout
    assert nacvae("--version").stdout.strip().startswith("nacvae, version")
    helptext = nacvae("pretrain", "--help").stdout
    for option in ("--data", "--data-dir", "--objective", "--arch", "--epochs", "--batch-size", "--lr",
                   "--flip-prob", "--code-dim", "--seed", "--device", "--out", "--resume"):
        assert option in helptext


@pytest.mark.parametrize("args,fragment", [
    (["--data", "mnist"], "Unknown dataset 'mnist'"),
    (["--arch", "resnet7"], "Unknown architecture 'resnet7'"),
    (["--flip-prob", "0.5"], "--flip-prob must be a number in (0, 0.5)"),
    (["--flip-prob", "0"], "--flip-prob must be a number in (0, 0.5)"),
    (["--batch-size", "1"], "--batch-size must be at least 2"),
    (["--lr", "nan"], "--lr must be a finite number above 0"),
    (["--lr", "inf"], "--lr must be a finite number above 0"),
    (["--lr", "0"], "--lr must be a finite number above 0"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--warmup-steps", "-1"], "--warmup-steps must not be negative"),
    (["--warmup-epochs", "2", "--warmup-steps", "30"], "Give --warmup-epochs or --warmup-steps, not both"),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "tpu"], "device"),
])
def test_bad_options_fail_cleanly_and_leave_nothing(tmp_path, args, fragment):
    out = tmp_path / "run"
    budget = [] if "--steps" in args else ["--epochs", "1"]
    assert_clean_failure(nacvae("pretrain", "--out", out, *budget, *args), fragment)
    assert not out.exists()


def test_click_usage_errors(tmp_path):
    out = tmp_path / "run"
    result = nacvae("pretrain", "--out", out, "--objective", "byol")
    assert_clean_failure(result, "Invalid value for '--objective'", usage_error=True)
    assert not out.exists()


def test_missing_and_corrupt_data(tmp_path):
    out = tmp_path / "run"
    missing = nacvae("pretrain", "--data", "cifar10", "--data-dir", tmp_path / "nothing", "--no-download", "--out", out)
    assert_clean_failure(missing, "CIFAR-10")
    assert not out.exists()
    corrupt_dir = tmp_path / "fm" / "FashionMNIST" / "raw"
    corrupt_dir.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (corrupt_dir / name).write_bytes(b"not a gzip file")
    corrupt = nacvae("pretrain", "--data", "fashion-mnist", "--data-dir", tmp_path / "fm", "--no-download", "--out", out)
    assert_clean_failure(corrupt, "train-")
    assert not out.exists()
    no_folder = nacvae("pretrain", "--data", f"folder:{tmp_path / 'no-such-folder'}", "--out", out)
    assert_clean_failure(no_folder, "no-such-folder")


def test_used_and_unwritable_out(tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "file").write_text("x")
    assert_clean_failure(nacvae("pretrain", "--out", used), "already used")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert_clean_failure(nacvae("pretrain", "--out", blocker / "run"), "cannot be created")
    assert_clean_failure(nacvae("pretrain", "--resume"), "--resume needs --out")
    assert_clean_failure(nacvae("pretrain", "--out", tmp_path / "new", "--resume"), "Cannot resume")


def test_resume_with_checkpoint_of_another_architecture(tmp_path):
    run = tmp_path / "run"
    ok = nacvae("pretrain", "--out", run, "--epochs", "1", "--batch-size", "512", "--code-dim", "8", "--quiet")
    assert ok.exit_code == 0, ok.output
    save_checkpoint(run / CHECKPOINT, "pretrain", {"arch": "resnet18", "objective": "nac"}, {}, {}, step=1)
    assert_clean_failure(nacvae("pretrain", "--out", run, "--resume"), "arch 'resnet18'")
    (run / CHECKPOINT).write_bytes(b"garbage")
    assert_clean_failure(nacvae("pretrain", "--out", run, "--resume"), "not a readable nacvae checkpoint")
