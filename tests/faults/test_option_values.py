"""Meaningless option values are refused by the configuration layer, before any folder is
made, with the option's name."""

import pytest

from tests.clitools import assert_clean_failure, nacvae

from nacvae.errors import ConfigError
from nacvae.train.config import resolve_config
from nacvae.train.vae_config import resolve_vae_config

PRETRAIN_BAD = [
    ("--objective simclr --temperature", "0", "--temperature must be a finite number above 0"),
    ("--objective moco --temperature", "-1", "--temperature must be a finite number above 0"),
    ("--objective insdis --temperature", "inf", "--temperature must be a finite number above 0"),
    ("--weight-decay", "-1", "--weight-decay must be a finite number of at least 0"),
    ("--weight-decay", "nan", "--weight-decay must be a finite number of at least 0"),
    ("--warmup-epochs", "-5", "--warmup-epochs must not be negative"),
    ("--warmup-steps", "-5", "--warmup-steps must not be negative"),
    ("--epochs", "0", "--epochs must be at least 1"),
    ("--steps", "-3", "--steps must be at least 1"),
    ("--batch-size", "1", "--batch-size must be at least 2"),
    ("--lr", "1e400", "--lr must be a finite number above 0"),
    ("--flip-prob", "nan", "--flip-prob must be a number in (0, 0.5)"),
    ("--code-dim", "0", "--code-dim must be at least 1"),
    ("--queue-size", "0", "--queue-size must be at least 1"),
    ("--l2-weight", "-0.1", "--l2-weight must be a finite number of at least 0"),
    ("--l2-weight", "nan", "--l2-weight must be a finite number of at least 0"),
    ("--ema", "1", "--ema must be a number in [0, 1)"),
    ("--ema", "-0.5", "--ema must be a number in [0, 1)"),
    ("--image-size", "0", "--image-size must be at least 1"),
    ("--seed", "-1", "--seed must not be negative"),
]


@pytest.mark.parametrize("option,value,fragment", PRETRAIN_BAD)
def test_pretrain_refuses(tmp_path, option, value, fragment):
    out = tmp_path / "run"
    assert_clean_failure(nacvae("pretrain", "--out", out, *option.split(), value), fragment)
    assert not out.exists()


def test_the_temperature_given_is_the_one_used():
    """0 was once silently replaced by the default while config.json recorded 0."""
    assert resolve_config("digits", objective="simclr", temperature=0.1).options["temperature"] == 0.1
    with pytest.raises(ConfigError, match="--temperature"):
        resolve_config("digits", objective="simclr", temperature=0.0)


VAE_BAD = [
    ("--lr", "-1", "--lr must be a finite number above 0"),
    ("--lr", "nan", "--lr must be a finite number above 0"),
    ("--latent-dim", "0", "--latent-dim must be at least 1"),
    ("--epochs", "0", "--epochs must be at least 1"),
    ("--batch-size", "1", "--batch-size must be at least 2"),
    ("--kl-warmup-epochs", "-1", "--kl-warmup-epochs must not be negative"),
    ("--eval-samples", "-1", "--eval-samples must not be negative"),
    ("--image-size", "0", "--image-size must be at least 1"),
    ("--seed", "-2", "--seed must not be negative"),
]


@pytest.mark.parametrize("option,value,fragment", VAE_BAD)
def test_vae_refuses(tmp_path, option, value, fragment):
    out = tmp_path / "run"
    assert_clean_failure(nacvae("vae", "--out", out, option, value), fragment)
    assert not out.exists()


@pytest.mark.parametrize("values", [dict(log_every=0), dict(checkpoint_every=-1), dict(seed=2**64)])
def test_settings_without_an_option_are_checked_too(values):
    with pytest.raises(ConfigError):
        resolve_config("digits", **values)
    if "seed" not in values:
        with pytest.raises(ConfigError):
            resolve_vae_config("digits", **values)


@pytest.mark.parametrize("args,fragment", [
    (["retrieval", "--queries-per-class", "0"], "--queries-per-class must be at least 1"),
    (["retrieval", "--topk", "-2"], "--topk must be at least 1"),
    (["codes", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["codes", "--code-dim", "0"], "--code-dim must be at least 1"),
    (["linear", "--lr", "nan"], "must be a positive number"),
])
def test_evaluations_refuse(args, fragment):
    assert_clean_failure(nacvae("eval", *args, "--init", "random", "--arch", "smallconv"), fragment)


def test_loglik_and_reproduce_refuse(tmp_path):
    assert_clean_failure(nacvae("eval", "loglik", "--run", tmp_path, "--samples", "0"), "--samples must be")
    assert_clean_failure(nacvae("reproduce", "--out", tmp_path / "s", "--seeds", "0"), "--seeds must be at least 1")
    assert_clean_failure(nacvae("reproduce", "--out", tmp_path / "s", "--flip-prob", "0.7"), "--flip-prob must be a number in (0, 0.5)")
    assert not (tmp_path / "s").exists()
