"""``pretrain --config`` and ``vae --config`` repeat a run with one setting changed."""

import json

from tests.clitools import assert_clean_failure, nacvae


def _section(run, kind):
    return json.loads((run / "config.json").read_text())[kind]


def test_pretrain_config_json_repeats_every_other_setting(tmp_path):
    first, again = tmp_path / "nac", tmp_path / "nac-s1"
    r = nacvae("pretrain", "--steps", 3, "--warmup-steps", 1, "--batch-size", 16, "--flip-prob", 0.3,
               "--code-dim", 16, "--out", first, "--quiet")
    assert r.exit_code == 0, r.output
    assert "Finished 3 steps, final loss" in r.stdout and f"Run folder: {first}" in r.stdout
    r = nacvae("pretrain", "--config", first / "config.json", "--seed", 1, "--out", again, "--quiet")
    assert r.exit_code == 0, r.output
    a, b = _section(first, "pretrain"), _section(again, "pretrain")
    assert b["seed"] == 1 and {**a, "seed": 1} == b
    done = nacvae("pretrain", "--out", first, "--resume")
    assert done.exit_code == 0 and "already complete (3 steps); nothing was trained" in done.stdout
    assert_clean_failure(nacvae("pretrain", "--config", first, "--out", first, "--resume"), "--config cannot be given")
    assert_clean_failure(nacvae("vae", "--config", first, "--out", tmp_path / "v"), "not a VAE run")


def test_vae_config_json_repeats_every_other_setting(tmp_path):
    first, again = tmp_path / "vae", tmp_path / "vae-s1"
    r = nacvae("vae", "--init", "random", "--steps", 2, "--batch-size", 16, "--latent-dim", 4, "--curve-points", 0,
               "--out", first, "--quiet")
    assert r.exit_code == 0, r.output
    r = nacvae("vae", "--config", first, "--seed", 1, "--out", again, "--quiet")
    assert r.exit_code == 0, r.output
    assert {**_section(first, "vae"), "seed": 1} == _section(again, "vae")


def test_unknown_key_is_one_sentence(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text("stepz = 3\n")
    assert_clean_failure(nacvae("pretrain", "--config", path, "--out", tmp_path / "r"), "'stepz' is not a pretraining")
    assert_clean_failure(nacvae("vae", "--config", tmp_path / "none.toml"), "does not exist")
