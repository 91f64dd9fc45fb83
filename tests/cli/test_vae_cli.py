"""``nacvae vae`` and ``nacvae eval loglik`` through the click application: output and bad input."""

import json
import math

import pytest

from tests.clitools import assert_clean_failure, nacvae

from nacvae.runs import CHECKPOINT, read_config, read_metrics
from nacvae.train.config import resolve_config
from nacvae.train.pretrain import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")

VAE_TINY = ["--epochs", "1", "--batch-size", "256", "--latent-dim", "8", "--quiet"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A runs root with a smallconv and a resnet18 NAC pretraining run, and a VAE trained from the first."""
    root = tmp_path_factory.mktemp("runs")
    for arch in ("smallconv", "resnet18"):
        cfg = resolve_config("digits", arch=arch, epochs=1, batch_size=512, code_dim=8)
        pretrain(cfg, root / f"nac-{arch}", progress=False)
    vae_run = tmp_path_factory.mktemp("vae") / "run"
    result = nacvae("vae", "--init", "nac", "--arch", "smallconv", "--runs-root", root, "--out", vae_run, *VAE_TINY)
    assert result.exit_code == 0, result.output
    assert f"Run folder: {vae_run}" in result.stdout
    # --init names the run it picked: the smallconv one, not the newer resnet18 run.
    assert f"Encoder: the newest complete nac pretraining run for digits under {root}: {root / 'nac-smallconv'}" \
        in result.stderr
    return root, vae_run


def test_help_lists_the_options():
    text = nacvae("vae", "--help").stdout
    for option in ("--data", "--data-dir", "--init", "--encoder", "--runs-root", "--arch", "--likelihood",
                   "--latent-dim", "--epochs", "--batch-size", "--lr", "--kl-warmup-epochs", "--elbo",
                   "--freeze-encoder", "--seed", "--device", "--out", "--resume", "--quiet", "--eval-samples",
                   "--binarize"):
        assert option in text, option
    text = nacvae("eval", "loglik", "--help").stdout
    for option in ("--run", "--checkpoint", "--samples", "--batch-size", "--chunk-size", "--num-images", "--seed",
                   "--device", "--json"):
        assert option in text, option


def test_vae_run_records_the_encoder_it_started_from(runs):
    root, vae_run = runs
    config = read_config(vae_run)
    assert config["kind"] == "vae" and config["status"] == "complete" and config["init"] == "nac"
    assert config["encoder"]["checkpoint"] == str(root / "nac-smallconv" / CHECKPOINT)
    assert config["encoder"]["objective"] == "nac" and config["encoder"]["step"] == 2
    assert config["arch"] == "smallconv" and config["dataset"] == "digits" and config["latent_dim"] == 8


def test_loglik_json(runs):
    _, vae_run = runs
    before = len(read_metrics(vae_run))
    result = nacvae("eval", "loglik", "--run", vae_run, "--samples", "50", "--num-images", "16", "--json")
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert {"loglik_nats", "bits_per_dim", "elbo", "kl", "active_units", "samples", "num_images", "init",
            "dataset"} <= set(r)
    assert r["samples"] == 50 and r["num_images"] == 16 and r["init"] == "nac" and r["dataset"] == "digits"
    assert r["bits_per_dim"] == pytest.approx(-r["loglik_nats"] / (1 * 8 * 8 * math.log(2)))
    assert r["loglik_nats"] >= r["elbo"] - 0.5
    records = read_metrics(vae_run)
    assert len(records) == before + 1 and records[-1]["event"] == "eval_loglik"
    assert records[-1]["loglik_nats"] == r["loglik_nats"]


def test_loglik_text(runs):
    _, vae_run = runs
    result = nacvae("eval", "loglik", "--checkpoint", vae_run / CHECKPOINT, "--samples", "5", "--num-images", "4")
    assert result.exit_code == 0, result.output
    for fragment in ("encoder init nac", "K = 5", "log-likelihood", "bits/dim", "ELBO", "KL", "active units"):
        assert fragment in result.stdout, fragment


def test_init_without_matching_run_lists_what_exists(runs, tmp_path):
    root, _ = runs
    out = tmp_path / "out"
    result = nacvae("vae", "--init", "moco", "--runs-root", root, "--out", out, *VAE_TINY)
    assert_clean_failure(result, "No complete moco pretraining run for digits")
    assert "nac/digits/resnet18, nac/digits/smallconv" in result.stderr
    assert not out.exists()
    empty = nacvae("vae", "--init", "nac", "--runs-root", tmp_path / "empty", "--out", out, *VAE_TINY)
    assert_clean_failure(empty, "the pretraining runs there are: none.")
    assert not out.exists()


def test_encoder_of_another_architecture(runs, tmp_path):
    root, _ = runs
    out = tmp_path / "out"
    result = nacvae("vae", "--encoder", root / "nac-resnet18", "--arch", "smallconv", "--out", out, *VAE_TINY)
    assert_clean_failure(result, "is a resnet18 backbone, but --arch smallconv was asked for")
    assert not out.exists()


@pytest.mark.parametrize("case", ["vae-run-as-encoder", "missing-encoder", "resume-without-out"])
def test_bad_vae_input(runs, tmp_path, case):
    _, vae_run = runs
    args, fragment = {
        "vae-run-as-encoder": (["--encoder", vae_run], "is a vae run, not a pretraining run"),
        "missing-encoder": (["--encoder", tmp_path / "nothing.pt"], "neither a checkpoint file nor a run folder"),
        "resume-without-out": (["--resume"], "--resume needs --out"),
    }[case]
    assert_clean_failure(nacvae("vae", *args, *VAE_TINY), fragment)


def test_bad_loglik_input(runs, tmp_path):
    root, vae_run = runs
    assert_clean_failure(nacvae("eval", "loglik", "--run", vae_run, "--samples", "0"),
                         "--samples must be at least 1, got 0")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    assert_clean_failure(nacvae("eval", "loglik", "--checkpoint", corrupt), "not a readable nacvae checkpoint")
    assert_clean_failure(nacvae("eval", "loglik", "--run", root / "nac-smallconv"), "is a pretrain run, not a VAE run")
    assert_clean_failure(nacvae("eval", "loglik", "--checkpoint", root / "nac-smallconv" / CHECKPOINT),
                         "is a pretrain checkpoint, not a vae checkpoint")
    assert_clean_failure(nacvae("eval", "loglik", "--run", tmp_path / "missing"), "No VAE run folder or checkpoint")
    assert_clean_failure(nacvae("eval", "loglik"), "exactly one of --run and --checkpoint")
