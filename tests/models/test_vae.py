import math

import pyro
import pyro.optim
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from torch import nn

from nacvae.errors import ConfigError
from nacvae.eval.loglik import evaluate_vae
from nacvae.models.likelihoods import binarize
from nacvae.models.vae import VAE, ConvDecoder, active_units, analytic_kl

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


def tiny_backbone(channels, features=8, batch_norm=False):
    layers = [nn.Conv2d(channels, features, 3, padding=1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(features))
    layers += [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def make_vae(shape, likelihood, **kwargs):
    kwargs.setdefault("latent_dim", 4)
    kwargs.setdefault("decoder_width", 16)
    c = shape[0]
    backbone = kwargs.pop("backbone", None) or tiny_backbone(c)
    return VAE(backbone, 8, shape, likelihood=likelihood, mean=(0.5,) * c, std=(0.25,) * c, **kwargs)


def make_data(shape, likelihood, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth-ish images: a per-image brightness plus noise, so there is something to learn
    base = torch.rand(n, 1, 1, 1, generator=g) * 200
    imgs = (base + 40 * torch.rand(n, *shape, generator=g)).clamp(0, 255).to(torch.uint8)
    return imgs.float() if likelihood == "logistic" else binarize(imgs)


@pytest.fixture(autouse=True)
def fresh_pyro():
    # the tensors here are tiny: one thread avoids OpenMP overhead on a busy machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()
    torch.set_num_threads(threads)


@pytest.mark.parametrize("shape", SHAPES)
def test_decoder_output_shapes(shape):
    z = torch.randn(5, 3, 6)
    loc, log_scale = ConvDecoder(6, shape, "logistic", width=16)(z)
    assert loc.shape == log_scale.shape == (5, 3, *shape)
    assert (log_scale >= -7.0).all()
    logits = ConvDecoder(6, shape, "bernoulli", width=16)(z)
    assert logits.shape == (5, 3, *shape)


@pytest.mark.parametrize("elbo_cls", [Trace_ELBO, TraceMeanField_ELBO])
@pytest.mark.parametrize("likelihood", ["logistic", "bernoulli"])
@pytest.mark.parametrize("shape", SHAPES)
def test_svi_loss_finite_and_decreasing(shape, likelihood, elbo_cls):
    vae = make_vae(shape, likelihood)
    x = make_data(shape, likelihood)
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), elbo_cls())
    losses = [svi.step(x) for _ in range(30)]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < sum(losses[:5])


def test_freeze_encoder_keeps_backbone():
    shape = (1, 8, 8)
    vae = make_vae(shape, "logistic", backbone=tiny_backbone(1, batch_norm=True), freeze_encoder=True)
    vae.train()
    assert not vae.backbone.training
    before = {k: v.clone() for k, v in vae.backbone.state_dict().items()}
    heads_before = vae.encoder.loc.weight.detach().clone()
    x = make_data(shape, "logistic")
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    for _ in range(5):
        svi.step(x)
    for k, v in vae.backbone.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.equal(vae.encoder.loc.weight, heads_before)
    assert all(not p.requires_grad for p in vae.backbone.parameters())
    assert not any("backbone" in name for name in pyro.get_param_store().keys())


def test_unfrozen_backbone_trains():
    shape = (1, 8, 8)
    vae = make_vae(shape, "logistic")
    before = vae.backbone[0].weight.detach().clone()
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    svi.step(make_data(shape, "logistic"))
    assert not torch.equal(vae.backbone[0].weight, before)


def test_stale_param_store_is_reported():
    shape = (1, 8, 8)
    x = make_data(shape, "logistic")
    first = make_vae(shape, "logistic")
    SVI(first.model, first.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO()).step(x)
    second = make_vae(shape, "logistic")
    with pytest.raises(ConfigError, match="clear_param_store"):
        second.model(x)


@pytest.mark.parametrize("likelihood", ["logistic", "bernoulli"])
def test_pictures_are_uint8(likelihood):
    shape = (3, 32, 32)
    vae = make_vae(shape, likelihood)
    imgs = vae.sample_images(3, generator=torch.Generator().manual_seed(0))
    assert imgs.dtype == torch.uint8 and imgs.shape == (3, *shape)
    noisy = vae.sample_images(2, generator=torch.Generator().manual_seed(0), pixel_noise=True)
    assert noisy.dtype == torch.uint8 and noisy.shape == (2, *shape)
    rec = vae.reconstruct(make_data(shape, likelihood, n=4))
    assert rec.dtype == torch.uint8 and rec.shape == (4, *shape)
    again = vae.sample_images(3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(imgs, again)


@pytest.mark.parametrize("likelihood", ["logistic", "bernoulli"])
def test_evaluate_vae_returns_all_keys(likelihood):
    shape = (1, 8, 8)
    vae = make_vae(shape, likelihood)
    x = make_data(shape, likelihood, n=10)
    out = evaluate_vae(vae, x, num_samples=20, batch_size=4)
    assert set(out) == {"loglik_nats", "bits_per_dim", "elbo", "kl", "active_units", "samples", "num_images"}
    assert out["num_images"] == 10 and out["samples"] == 20
    assert all(math.isfinite(out[k]) for k in ("loglik_nats", "bits_per_dim", "elbo", "kl"))
    assert out["bits_per_dim"] == pytest.approx(-out["loglik_nats"] / (64 * math.log(2)))
    assert out["loglik_nats"] <= 0 and out["kl"] >= 0
    assert 0 <= out["active_units"] <= 4
    assert vae.training  # mode restored
    assert len(pyro.get_param_store().keys()) == 0  # evaluation used its own param store


def test_evaluate_vae_rejects_wrong_data():
    vae = make_vae((1, 8, 8), "bernoulli")
    with pytest.raises(ConfigError):
        evaluate_vae(vae, make_data((1, 8, 8), "logistic"), num_samples=2)
    with pytest.raises(ConfigError):
        evaluate_vae(vae, torch.zeros(2, 1, 9, 9), num_samples=2)


def test_config_errors():
    with pytest.raises(ConfigError):
        make_vae((1, 8, 8), "gaussian")
    with pytest.raises(ConfigError):
        VAE(tiny_backbone(3), 8, (3, 8, 8), mean=(0.5, 0.5), std=(0.5, 0.5))
    with pytest.raises(ConfigError):
        VAE(tiny_backbone(1), 8, (1, 8))


def test_analytic_kl_closed_form_and_monte_carlo():
    assert analytic_kl(torch.zeros(3, 5), torch.ones(3, 5)).abs().max().item() == 0.0
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 3, generator=g, dtype=torch.float64)
    sigma = 0.3 + torch.rand(4, 3, generator=g, dtype=torch.float64)
    q = torch.distributions.Normal(mu, sigma)
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(sigma))
    z = q.sample((400_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(0)
    torch.testing.assert_close(analytic_kl(mu, sigma), mc, atol=0.02, rtol=0)
    torch.testing.assert_close(
        analytic_kl(mu, sigma), torch.distributions.kl_divergence(q, p).sum(-1), atol=1e-12, rtol=0
    )


def test_active_units():
    mu = torch.zeros(100, 4)
    mu[:, 0] = torch.linspace(-1, 1, 100)  # variance ~0.34: active
    mu[:, 1] = torch.linspace(-0.1, 0.1, 100)  # variance ~0.0034: inactive
    assert active_units(mu) == 1
    assert active_units(mu, threshold=0.001) == 2
    assert active_units(mu[:1]) == 0
    with pytest.raises(ConfigError):
        active_units(torch.zeros(5))
