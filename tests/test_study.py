"""``nacvae reproduce`` end to end at a toy scale: every stage runs and the outputs exist."""

import json

import pytest

from nacvae.errors import ConfigError
from nacvae.study import INITS, Preset, aggregate, markdown_table, run_study

TOY = Preset(
    data="digits", arch="smallconv", description="toy",
    pretrain=dict(epochs=1, batch_size=512, code_dim=16, queue_size=64),
    linear=dict(protocol="fast", epochs=2, batch_size=512),
    vae=dict(epochs=1, batch_size=512, latent_dim=4, test_every=1, image_every=0),
    loglik_samples=4, loglik_images=16,
)


def test_toy_study_writes_tables_and_figures(tmp_path):
    results = run_study(TOY, tmp_path / "study", seeds=1, device="cpu", progress=False, log=lambda m: None)
    assert set(results["table"]) == set(INITS)
    for init in INITS:
        row = results["table"][init]
        assert 0.0 <= row["linear_test_accuracy"]["mean"] <= 1.0
        assert 0.0 <= row["retrieval_map"]["mean"] <= 1.0
        assert row["vae_loglik_nats"]["mean"] < 0
    out = tmp_path / "study"
    assert json.loads((out / "results.json").read_text())["seeds"] == 1
    assert "| nac |" in (out / "results.md").read_text()
    assert (out / "figures" / "summary.png").stat().st_size > 0
    assert (out / "figures" / "vae_training.png").stat().st_size > 0
    assert (out / "seed-0" / "pretrain-moco" / "config.json").is_file()


def test_aggregate_mean_and_std():
    keys = ["linear_test_accuracy", "retrieval_map", "distinct_codes", "mean_pairwise_hamming", "vae_loglik_nats",
            "vae_bits_per_dim", "vae_kl", "vae_active_units"]
    rows = [dict({k: float(s) for k in keys}, init="nac", seed=s) for s in (1, 3)]
    table = aggregate(rows)["table"]
    assert table["nac"]["retrieval_map"] == {"mean": 2.0, "std": pytest.approx(2 ** 0.5), "n": 2}
    assert "± " in markdown_table({"table": table})


def test_bad_preset_and_seeds(tmp_path):
    with pytest.raises(ConfigError, match="Unknown preset"):
        run_study("imagenet", tmp_path / "a")
    with pytest.raises(ConfigError, match="--seeds"):
        run_study("digits", tmp_path / "b", seeds=0)
