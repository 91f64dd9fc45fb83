"""``nacvae eval gap`` on a tiny digits VAE: the JSON fields, their arithmetic, bad input."""

import json

import pytest

from tests.clitools import assert_clean_failure, nacvae

from nacvae.runs import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--num-images", "20", "--samples", "50", "--elbo-samples", "50", "--max-steps", "100", "--check-every", "20"]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("gap") / "vae"
    result = nacvae("vae", "--init", "random", "--out", run, "--epochs", "2", "--batch-size", "256",
                    "--latent-dim", "4", "--quiet")
    assert result.exit_code == 0, result.output
    return run


def test_gap_json(vae_run):
    result = nacvae("eval", "gap", "--run", vae_run, *FAST, "--json")
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert list(r) == ["loglik_nats", "elbo_amortised", "elbo_optimal", "approximation_gap", "amortisation_gap",
                       "num_images", "samples"]
    assert r["num_images"] == 20 and r["samples"] == 50
    assert r["approximation_gap"] == pytest.approx(r["loglik_nats"] - r["elbo_optimal"])
    assert r["amortisation_gap"] == pytest.approx(r["elbo_optimal"] - r["elbo_amortised"])
    # An encoder trained for two epochs leaves room that a per-image fit takes.
    assert r["amortisation_gap"] > 0.5
    assert r["approximation_gap"] > -0.5
    assert -300 < r["elbo_amortised"] < r["loglik_nats"] < 0
    recorded = [m for m in read_metrics(vae_run) if m.get("event") == "eval_gap"]
    assert recorded and recorded[-1]["loglik_nats"] == pytest.approx(r["loglik_nats"])
    assert recorded[-1]["budget"]["max_steps"] == 100


def test_gap_text(vae_run):
    result = nacvae("eval", "gap", "--run", vae_run, *FAST)
    assert result.exit_code == 0, result.output
    for label in ("log p(x)", "ELBO(q*)", "ELBO(q)", "approximation gap", "amortisation gap"):
        assert label in result.stdout


@pytest.mark.parametrize("args, fragment", [
    (["--samples", "0"], "--samples must be at least 1"),
    (["--lr", "-1"], "--lr must be a positive number"),
    (["--num-images", "100000"], "more than the 359 test images"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
])
def test_bad_gap_input(vae_run, args, fragment):
    assert_clean_failure(nacvae("eval", "gap", "--run", vae_run, *args), fragment)


def test_gap_needs_a_vae_run(tmp_path):
    assert_clean_failure(nacvae("eval", "gap", "--run", tmp_path / "missing"), "No VAE run folder or checkpoint")
