"""Convergence curves of VAE runs: points at fixed fractions of training, on fixed test images."""

import math

import pytest
import torch

from nacvae.eval.loglik import importance_log_likelihood
from nacvae.eval.vae_runs import load_vae
from nacvae.models.vae_inputs import observed_test_images
from nacvae.runs import read_metrics
from nacvae.train.vae import resolve_vae_config, train_vae
from nacvae.train.vae_curves import curve_point, curve_steps

pytestmark = pytest.mark.usefixtures("one_thread")


def test_curve_steps_are_fixed_fractions():
    assert curve_steps(10, 4) == {2: 0.2, 5: 0.5, 8: 0.8, 10: 1.0}
    assert curve_steps(3, 10) == {1: 1 / 3, 2: 2 / 3, 3: 1.0}  # fewer steps than points: every step once
    assert curve_steps(100, 0) == {} and curve_steps(0, 5) == {}
    steps = curve_steps(1234, 10)
    assert len(steps) == 10 and max(steps) == 1234
    assert all(abs(f - k / 10) < 1 / 1234 for k, f in zip(range(1, 11), steps.values()))


@pytest.fixture(scope="module")
def curve_run(tmp_path_factory):
    cfg = resolve_vae_config("digits", init="random", epochs=2, batch_size=256, latent_dim=4, curve_points=4,
                             curve_samples=20, curve_images=50, image_every=0)
    return train_vae(cfg, tmp_path_factory.mktemp("curve") / "run", progress=False)


def test_run_logs_curve_points(curve_run):
    points = [r for r in read_metrics(curve_run) if r["event"] == "curve"]
    assert [r["step"] for r in points] == [2, 5, 8, 10]
    assert [r["fraction"] for r in points] == [0.2, 0.5, 0.8, 1.0]
    assert all(r["num_images"] == 50 and r["samples"] == 20 for r in points)
    assert all(math.isclose(r["elbo"], r["reconstruction"] - r["kl"], rel_tol=1e-9) for r in points)
    # Training improves the model on the fixed test images.
    assert points[-1]["elbo"] > points[0]["elbo"] and points[-1]["loglik_nats"] > points[0]["loglik_nats"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(curve_run / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("curve/loglik_nats")] == [2, 5, 8, 10]
    assert [e.step for e in events.Scalars("curve/elbo")] == [2, 5, 8, 10]


def test_last_point_is_the_final_model_on_the_first_test_images(curve_run):
    vae, meta = load_vae(curve_run)
    from nacvae.data import load_dataset

    test = load_dataset("digits", "test")
    x = observed_test_images(test.images, "logistic", "threshold", 0)[:50]
    last = [r for r in read_metrics(curve_run) if r["event"] == "curve"][-1]
    again = curve_point(vae, x, 20, seed=123)
    # The one-sample ELBO and K = 20 estimates from other draws agree within their noise ...
    assert again["kl"] == pytest.approx(last["kl"], rel=1e-5)  # analytic: no noise
    assert again["elbo"] == pytest.approx(last["elbo"], abs=3.0)
    assert again["loglik_nats"] == pytest.approx(last["loglik_nats"], abs=1.0)
    # ... and the log p(x) is the project's importance-weighted estimator, image by image.
    import pyro

    pyro.set_rng_seed(7)
    direct = importance_log_likelihood(vae.model, vae.guide, x, 20).double().mean().item()
    assert direct == pytest.approx(last["loglik_nats"], abs=1.0)
    assert last["loglik_nats"] > last["elbo"] - 1.0


def test_curve_point_leaves_training_streams_alone():
    cfg = resolve_vae_config("digits", epochs=1, batch_size=256, latent_dim=4)
    from nacvae.models.backbones import build_backbone
    from nacvae.train.vae import build_vae

    backbone, dim = build_backbone("smallconv", 1, 8)
    vae = build_vae(cfg, backbone, dim, (1, 8, 8), (0.5,), (0.5,)).train()
    x = torch.randint(0, 17, (10, 1, 8, 8)).float()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    curve_point(vae, x, 5, seed=1)
    assert torch.equal(torch.rand(3), expected) and vae.training


def test_steps_end_a_run_mid_epoch(tmp_path):
    from nacvae.checkpoint import load_checkpoint
    from nacvae.runs import CHECKPOINT, read_config

    cfg = resolve_vae_config("digits", steps=3, batch_size=256, latent_dim=4, curve_points=3, curve_samples=0,
                             curve_images=20, image_every=0)
    run = train_vae(cfg, tmp_path / "run", progress=False)
    assert read_config(run)["total_steps"] == 3 and load_checkpoint(run / CHECKPOINT)["step"] == 3
    metrics = read_metrics(run)
    assert [r["step"] for r in metrics if r["event"] == "test"] == [3]
    points = [r for r in metrics if r["event"] == "curve"]
    assert [r["step"] for r in points] == [1, 2, 3] and all("loglik_nats" not in r for r in points)
