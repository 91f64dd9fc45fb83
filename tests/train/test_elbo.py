"""The VAE loss built from the model's terms equals Pyro's ELBO losses, and never reads
values back to the host."""

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.messenger import Messenger

from nacvae.models.backbones import build_backbone
from nacvae.models.vae import VAE
from nacvae.models.vae_inputs import vae_observations
from nacvae.train.elbo import negative_elbo

PYRO_ELBOS = {"meanfield": TraceMeanField_ELBO, "trace": Trace_ELBO}


class ScaleLatent(Messenger):
    """Multiplies the site ``z``'s log-density terms by ``weight`` (the KL weight beta)."""

    def __init__(self, weight):
        super().__init__()
        self.weight = weight

    def _process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] == "z":
            msg["scale"] = self.weight * msg["scale"]


def tiny_vae(likelihood, dtype=torch.float64):
    torch.manual_seed(0)
    backbone, f = build_backbone("smallconv", 1, 8)
    return VAE(backbone, f, (1, 8, 8), latent_dim=4, likelihood=likelihood, mean=(0.3,), std=(0.4,),
               decoder_width=16).to(dtype)


def batch(likelihood, n=6, dtype=torch.float64):
    images = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    return vae_observations(images, likelihood).to(dtype)


def pyro_loss(vae, x, estimator, kl_weight):
    with pyro.get_param_store().scope():
        elbo = PYRO_ELBOS[estimator]()
        return elbo.differentiable_loss(ScaleLatent(kl_weight)(vae.model), ScaleLatent(kl_weight)(vae.guide), x) / len(x)


@pytest.mark.parametrize("likelihood", ["logistic", "bernoulli"])
@pytest.mark.parametrize("estimator", ["meanfield", "trace"])
@pytest.mark.parametrize("kl_weight", [1.0, 0.3])
def test_loss_and_gradients_equal_pyros(likelihood, estimator, kl_weight):
    vae = tiny_vae(likelihood)
    x = batch(likelihood)
    params = [p for p in vae.parameters() if p.requires_grad]
    pyro.set_rng_seed(7)  # the same draw of eps for both
    expected = pyro_loss(vae, x, estimator, kl_weight)
    expected_grads = torch.autograd.grad(expected, params)
    pyro.set_rng_seed(7)
    with pyro.validation_enabled(False):
        loss, rec, kl = negative_elbo(vae, x, kl_weight, estimator)
    grads = torch.autograd.grad(loss, params)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-10)
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-11)
    assert not rec.requires_grad and not kl.requires_grad
    if estimator == "meanfield":  # beta = 1: the loss is -(rec - kl) / B
        pyro.set_rng_seed(7)
        full, rec1, kl1 = negative_elbo(vae, x, 1.0, estimator)
        torch.testing.assert_close(full, -(rec1 - kl1) / len(x), rtol=1e-12, atol=1e-12)


def test_another_draw_gives_another_loss():
    vae, x = tiny_vae("logistic"), batch("logistic")
    pyro.set_rng_seed(7)
    a = negative_elbo(vae, x)[0]
    pyro.set_rng_seed(8)
    b = negative_elbo(vae, x)[0]
    assert a != b


HOST_READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


@pytest.fixture
def host_reads(monkeypatch):
    """Counts every read of a tensor's values by the host (each a device sync on a GPU)."""
    counts = {"n": 0}
    for name in HOST_READS:
        real = getattr(torch.Tensor, name)

        def counting(self, *args, _real=real, **kwargs):
            counts["n"] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return counts


@pytest.mark.parametrize("likelihood", ["logistic", "bernoulli"])
@pytest.mark.parametrize("estimator", ["meanfield", "trace"])
def test_a_training_step_never_reads_the_device(host_reads, likelihood, estimator):
    from nacvae.train.vae import _loss

    vae = tiny_vae(likelihood, torch.float32)
    x = batch(likelihood, dtype=torch.float32)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    with pyro.validation_enabled(False):  # as in the training loop
        for _ in range(2):
            host_reads["n"] = 0
            loss, rec, kl = _loss(vae, estimator, x, 0.5)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            assert host_reads["n"] == 0
            optimizer.step()  # Adam reads its step count from a CPU tensor only
    # The counter does see reads: Pyro's own ELBO makes several per step.
    host_reads["n"] = 0
    with pyro.validation_enabled(False):
        pyro_loss(vae, x, estimator, 0.5).backward()
    assert host_reads["n"] > 0
