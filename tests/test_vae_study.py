"""``nacvae reproduce --preset fashion-mnist-vae``'s machinery at a toy scale on digits."""

import json
import re

import pytest

from nacvae.errors import ConfigError
from nacvae.runs import read_config
from nacvae.studies.presets import INITS, MODES, VAE_PRESETS, VAEStudyPreset
from nacvae.studies.vae import pretraining_differences, run_vae_study
from nacvae.studies.vae_report import aggregate_vae, steps_to_reach, vae_markdown_table
from tests.clitools import assert_clean_failure, nacvae

pytestmark = pytest.mark.usefixtures("one_thread")

TOY = VAEStudyPreset(
    data="digits", arch="smallconv", description="toy",
    pretrain=dict(steps=3, warmup_steps=1, batch_size=512, code_dim=16, queue_size=64),
    vae=dict(steps=4, batch_size=256, latent_dim=4, curve_points=2, curve_samples=3, curve_images=20,
             test_every=0, image_every=0),
    loglik_samples=4, loglik_images=16,
    gap=dict(num_images=8, samples=4, elbo_samples=4, max_steps=4, check_every=2),
)


def test_steps_to_reach():
    curve = [(10, -300.0), (20, -250.0), (30, -240.0)]
    assert steps_to_reach(curve, -250.0) == 20
    assert steps_to_reach(curve, -400.0) == 10
    assert steps_to_reach(curve, -239.0) is None


def _row(seed, init, mode, curve):
    return {"seed": seed, "init": init, "mode": mode, "loglik_nats": -100.0 - seed, "curve": curve}


def test_aggregate_compares_each_init_with_random_of_its_seed_and_mode():
    rows = [
        _row(0, "random", "frozen", [[5, -200.0, None], [10, -150.0, None]]),
        _row(0, "nac", "frozen", [[5, -140.0, None], [10, -120.0, None]]),
        _row(1, "random", "frozen", [[5, -300.0, None], [10, -100.0, None]]),
        _row(1, "nac", "frozen", [[5, -110.0, None], [10, -101.0, None]]),
        _row(0, "random", "fine-tuned", [[5, -1.0, None], [10, -0.5, None]]),
    ]
    result = aggregate_vae(rows)
    nac = result["table"]["frozen"]["nac"]
    assert nac["steps_to_random_final"] == {"mean": 5.0, "std": 0.0, "n": 1} and nac["reached"] == 1
    assert nac["seeds"] == 2 and nac["loglik_nats"]["mean"] == pytest.approx(-100.5)
    assert result["table"]["frozen"]["random"]["steps_to_random_final"]["mean"] == 10.0
    assert result["table"]["fine-tuned"]["random"]["reached"] == 1
    assert "(1/2 reached)" in vae_markdown_table({**result, "seeds": 2})


def test_toy_vae_study(tmp_path):
    out = tmp_path / "study"
    results = run_vae_study(TOY, out, seeds=1, device="cpu", progress=False, log=lambda m: None)
    assert list(results["table"]) == list(MODES)
    for mode in MODES:
        assert list(results["table"][mode]) == list(INITS)
    rows = json.loads((out / "seed-0" / "rows.json").read_text())
    assert len(rows) == len(INITS) * len(MODES)
    for row in rows:
        assert [p[0] for p in row["curve"]] == [2, 4]
        assert row["amortisation_gap"] == pytest.approx(row["elbo_optimal"] - row["elbo_amortised"])
        config = read_config(out / row["vae_run"])
        assert config["freeze_encoder"] is (row["mode"] == "frozen") and config["total_steps"] == 4
        assert config["init"] == row["init"]
    assert (out / "figures" / "vae_convergence.png").stat().st_size > 0
    assert "| frozen | nac |" in (out / "results.md").read_text()
    assert json.loads((out / "seed-0" / "seconds.json").read_text())["seconds"] > 0
    # Resuming a finished seed changes nothing; another plan is refused.
    again = run_vae_study(TOY, out, seeds=1, device="cpu", progress=False, log=lambda m: None, resume=True)
    assert again["rows"] == results["rows"]
    with pytest.raises(ConfigError, match="other settings"):
        run_vae_study(TOY, out, seeds=1, device="cpu", progress=False, log=lambda m: None, resume=True,
                      flip_prob=0.3)


def test_a_variant_borrows_the_encoders_of_another_study(tmp_path):
    quiet = dict(seeds=1, device="cpu", progress=False, log=lambda m: None)
    first = tmp_path / "first"
    run_vae_study(TOY, first, **quiet)
    variant = tmp_path / "variant"
    results = run_vae_study(TOY, variant, encoders_from=first, vae_options={"likelihood": "bernoulli", "latent_dim": 3},
                            **quiet)
    assert not list((variant / "seed-0").glob("pretrain-*"))  # nothing pretrained again
    rows = json.loads((variant / "seed-0" / "rows.json").read_text())
    assert len(rows) == len(INITS) * len(MODES)
    for row in rows:
        config = read_config(variant / row["vae_run"])
        assert config["vae"]["likelihood"] == "bernoulli" and config["vae"]["latent_dim"] == 3
        if row["init"] != "random":
            assert row["pretrain_run"] == str(first / "seed-0" / f"pretrain-{row['init']}")
            assert config["vae"]["encoder"] == row["pretrain_run"]
    study = json.loads((variant / "study.json").read_text())
    assert study["encoders_from"] == str(first) and study["vae"]["likelihood"] == "bernoulli"
    assert "bernoulli likelihood, 3-d latent" in (variant / "results.md").read_text()
    assert results["table"]["frozen"]["nac"]["seeds"] == 1
    # Encoders trained with other settings cannot stand in; nor can a folder that is no study.
    other = VAEStudyPreset(**{**TOY.__dict__, "pretrain": dict(TOY.pretrain, steps=4)})
    with pytest.raises(ConfigError, match="pretrained with steps = 3, not the study's 4"):
        run_vae_study(other, tmp_path / "other", encoders_from=first, **quiet)
    with pytest.raises(ConfigError, match="not a study folder"):
        run_vae_study(TOY, tmp_path / "x", encoders_from=first / "seed-0", **quiet)
    with pytest.raises(ConfigError, match="--latent-dim must be"):
        run_vae_study(TOY, tmp_path / "y", vae_options={"latent_dim": 0}, **quiet)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_pretraining_differences_ignore_how_a_run_was_executed():
    saved = {"steps": 3, "lr": 3.0, "device": "cuda", "data_dir": "/a", "threads": 2, "log_every": 1}
    wanted = {"steps": 3, "lr": 3.0, "device": "cpu", "data_dir": None, "threads": None, "log_every": 10}
    assert pretraining_differences(saved, wanted) == []
    assert pretraining_differences(saved, {**wanted, "lr": 1.0, "teacher": "t"}) == ["lr", "teacher"]


def test_vae_options_belong_to_the_vae_study(tmp_path):
    for flag, value in (("--likelihood", "bernoulli"), ("--latent-dim", "16"), ("--vae-steps", "9"),
                        ("--encoders-from", str(tmp_path))):
        assert_clean_failure(nacvae("reproduce", "--preset", "digits", flag, value, "--out", tmp_path / "s"),
                             "belongs to the VAE study")
    assert not (tmp_path / "s").exists()


def test_preset_is_listed_and_unknown_presets_refused(tmp_path):
    assert "fashion-mnist-vae" in VAE_PRESETS
    help_text = re.sub(r"-\s+", "-", nacvae("reproduce", "--help").stdout)  # help wraps after hyphens
    assert "fashion-mnist-vae" in help_text
    assert_clean_failure(nacvae("reproduce", "--preset", "nope", "--out", tmp_path / "s"), "fashion-mnist-vae")
