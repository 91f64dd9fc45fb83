"""The new objectives through the CLI: bad teachers and options fail in one sentence and
leave nothing behind; a run is read by eval, vae --init and export."""

import pytest
import torch

from nacvae.runs import CHECKPOINT
from tests.clitools import assert_clean_failure, nacvae

FAST = ["--steps", "2", "--warmup-steps", "1", "--batch-size", "64", "--code-dim", "8", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    run = tmp_path_factory.mktemp("teacher") / "simclr"
    result = nacvae("pretrain", "--objective", "simclr", "--out", run, *FAST)
    assert result.exit_code == 0, result.output
    return run


@pytest.mark.parametrize("objective", ["ssdh", "distillhash"])
def test_teacher_objectives_without_teacher_fail_cleanly(tmp_path, objective):
    result = nacvae("pretrain", "--objective", objective, "--out", tmp_path / "run", *FAST)
    assert_clean_failure(result, f"--objective {objective} needs --teacher")
    assert not (tmp_path / "run").exists()


def test_bad_teachers_fail_in_one_sentence_and_leave_nothing(tmp_path, teacher):
    (tmp_path / "garbage.pt").write_bytes(b"\x00\x01 definitely not a torch file")
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "other-arch.pt")
    cases = [
        (tmp_path / "missing.pt", "does not exist"),
        (tmp_path / "garbage.pt", "is not a readable checkpoint or state-dict file"),
        (tmp_path / "other-arch.pt", "does not hold the weights of a supported backbone"),
        (tmp_path, "not a pretraining run"),
    ]
    for path, fragment in cases:
        out = tmp_path / "run"
        result = nacvae("pretrain", "--objective", "ssdh", "--teacher", path, "--out", out, *FAST)
        assert_clean_failure(result, fragment)
        assert not out.exists(), path


def test_teacher_trained_on_other_images_fails_cleanly(tmp_path, teacher):
    from nacvae.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(teacher / CHECKPOINT)
    ckpt["meta"]["image_shape"] = [3, 32, 32]
    save_checkpoint(tmp_path / "cifar.pt", "pretrain", ckpt["meta"], ckpt["config"], ckpt["model"], ckpt["step"])
    result = nacvae("pretrain", "--objective", "distillhash", "--teacher", tmp_path / "cifar.pt",
                    "--out", tmp_path / "run", *FAST)
    assert_clean_failure(result, "was trained on images of shape (3, 32, 32)")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,fragment", [
    (["--objective", "nac", "--teacher", "x.pt"], "--teacher is an option of --objective deepbit, ssdh or distillhash"),
    (["--objective", "insdis", "--negatives", "-1"], "--negatives must not be negative"),
    (["--objective", "insdis", "--bank-momentum", "1"], "--bank-momentum must be a number in [0, 1)"),
    (["--objective", "insdis", "--temperature", "0"], "--temperature must be a finite number above 0"),
])
def test_bad_baseline_options_fail_cleanly(tmp_path, args, fragment):
    result = nacvae("pretrain", *args, "--out", tmp_path / "run", *FAST)
    assert_clean_failure(result, fragment)
    assert not (tmp_path / "run").exists()


def test_a_teacher_run_drives_ssdh_and_every_command_reads_the_result(tmp_path, teacher):
    run = tmp_path / "runs" / "ssdh"
    result = nacvae("pretrain", "--objective", "ssdh", "--teacher", teacher, "--out", run, *FAST)
    assert result.exit_code == 0, result.output
    for args in (["eval", "codes", "--run", run], ["export", "--run", run, "--out", tmp_path / "b.pt"]):
        assert nacvae(*args).exit_code == 0
    vae = nacvae("vae", "--init", "ssdh", "--runs-root", tmp_path / "runs", "--epochs", "1", "--latent-dim", "4",
                 "--device", "cpu", "--quiet", "--out", tmp_path / "vae")
    assert vae.exit_code == 0, vae.output
    assert "ssdh" in (tmp_path / "vae" / "config.json").read_text()


def test_reproduce_with_an_unknown_method_fails_cleanly(tmp_path):
    result = nacvae("reproduce", "--methods", "nac,byol", "--device", "cpu", "--out", tmp_path / "study")
    assert_clean_failure(result, "Unknown method 'byol' for --methods")
    assert not (tmp_path / "study").exists()
    assert "--methods" in nacvae("reproduce", "--help").stdout


def test_deepbit_without_a_teacher_needs_the_shared_recipe(tmp_path, teacher):
    result = nacvae("pretrain", "--objective", "deepbit", "--out", tmp_path / "run", *FAST)
    assert_clean_failure(result, "--objective deepbit starts from a pretrained network under its own recipe")
    assert not (tmp_path / "run").exists()
    shared = nacvae("pretrain", "--objective", "deepbit", "--recipe", "shared", "--out", tmp_path / "shared", *FAST)
    assert shared.exit_code == 0, shared.output
    assert '"recipe": "shared"' in (tmp_path / "shared" / "config.json").read_text()


def test_deepbit_codes_say_they_are_read_at_the_training_mean(tmp_path, teacher):
    import json

    run = tmp_path / "deepbit"
    result = nacvae("pretrain", "--objective", "deepbit", "--teacher", teacher, "--out", run, *FAST)
    assert result.exit_code == 0, result.output
    for verb in ("codes", "retrieval"):
        shown = json.loads(nacvae("eval", verb, "--run", run, "--json").stdout)
        assert shown["codes"] == "sigmoid(a) > its mean over the training images", verb
    ssdh = tmp_path / "ssdh"
    assert nacvae("pretrain", "--objective", "ssdh", "--teacher", teacher, "--out", ssdh, *FAST).exit_code == 0
    assert json.loads(nacvae("eval", "codes", "--run", ssdh, "--json").stdout)["codes"] == "sgn(a)"


@pytest.mark.parametrize("args,fragment,usage", [
    (["--recipe", "mine"], "Invalid value for '--recipe'", True),
    (["--schedule", "step", "--lr-drops", "1.5"], "--lr-drops must be fractions of the run between 0 and 1", False),
    (["--lr-drops", "a,b"], "is not a comma-separated list of numbers", True),
])
def test_bad_recipe_options_fail_cleanly(tmp_path, args, fragment, usage):
    result = nacvae("pretrain", *args, "--out", tmp_path / "run", *FAST)
    assert_clean_failure(result, fragment, usage_error=usage)
    assert not (tmp_path / "run").exists()
