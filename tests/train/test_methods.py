"""The methods' losses on a small encoder: what each feeds its objective, and what trains."""

import math

import torch
import torch.nn.functional as F

from nacvae.methods.moco import MoCo
from nacvae.methods.nac import NAC, NACMomentum
from nacvae.methods.simclr import SimCLR
from nacvae.models.backbones import build_backbone
from nacvae.models.heads import PretrainEncoder
from nacvae.objectives import nac_loss, sample_channel_signs


def encoder(predictor=True):
    torch.manual_seed(0)
    backbone, f = build_backbone("smallconv", 1, 8)
    return PretrainEncoder(backbone, f, 16, predictor=predictor)


def views():
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)


def test_nac_method_is_nac_loss_of_the_encoder_outputs():
    enc = encoder()
    x1, x2 = views()
    loss, a1 = NAC(enc, 0.1).loss(x1, x2, torch.Generator().manual_seed(3))
    _, a, l = enc(torch.cat([x1, x2]))
    expected = nac_loss(a[:4], a[4:], l[:4], l[4:], 0.1, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(a1, a[:4])


def test_moco_enqueues_normalised_keys_of_both_views_after_the_loss():
    method = MoCo(encoder(predictor=False), queue_size=10, momentum=0.99)
    x1, x2 = views()
    method.loss(x1, x2, torch.Generator())
    with torch.no_grad():
        _, k, _ = method.key_encoder(torch.cat([x1, x2]))
    torch.testing.assert_close(method.queue.keys[:8], F.normalize(k, dim=1))
    assert int(method.queue.ptr) == 8


def test_nac_momentum_enqueues_key_codes_first_and_trains_only_through_query():
    method = NACMomentum(encoder(), 0.1, queue_size=12)
    x1, x2 = views()
    loss, _ = method.loss(x1, x2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, ka, _ = method.key_encoder(torch.cat([x1, x2]))
    torch.testing.assert_close(method.queue.keys[:8], torch.tanh(ka))
    loss.backward()
    assert all(p.grad is None for p in method.key_encoder.parameters())
    assert method.encoder.predictor.net[0].weight.grad is not None
    assert method.encoder.backbone.features[0].weight.grad is not None


def test_simclr_method_is_nt_xent_of_both_views_and_backpropagates():
    method = SimCLR(encoder(predictor=False), temperature=0.3)
    x1, x2 = views()
    loss, a1 = method.loss(x1, x2, torch.Generator())
    # NT-Xent written out, in float64: each of the 2B views against its partner, among all others.
    with torch.no_grad():
        _, a, _ = method.encoder(torch.cat([x1, x2]))
    z = torch.nn.functional.normalize(a.double(), dim=1)
    n, b = len(z), len(z) // 2
    expected = 0.0
    for i in range(n):
        logits = [float(z[i] @ z[k]) / 0.3 for k in range(n) if k != i]
        partner = float(z[i] @ z[(i + b) % n]) / 0.3
        expected -= partner - math.log(sum(math.exp(v) for v in logits))
    assert math.isclose(loss.item(), expected / n, rel_tol=1e-5)
    torch.testing.assert_close(a1.detach(), a[:b])
    loss.backward()
    assert method.encoder.backbone.features[0].weight.grad is not None


def test_channel_noise_is_reproducible_per_generator():
    a = sample_channel_signs((3, 3), 0.2, torch.Generator().manual_seed(9))
    b = sample_channel_signs((3, 3), 0.2, torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_prepare_method_on_cpu_is_channels_last_with_the_same_loss(tmp_path):
    from nacvae.checkpoint import load_checkpoint, save_checkpoint
    from nacvae.train.methods import prepare_method

    x1, x2 = views()
    plain = NAC(encoder(), 0.1)
    expected, _ = plain.loss(x1, x2, torch.Generator().manual_seed(3))
    method = prepare_method(NAC(encoder(), 0.1), torch.device("cpu"), amp=False)
    conv = method.encoder.backbone.features[3].weight
    assert method.channels_last and conv.is_contiguous(memory_format=torch.channels_last)
    assert not conv.is_contiguous()
    loss, _ = method.loss(x1, x2, torch.Generator().manual_seed(3))
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)

    # Checkpoints keep the plain NCHW layout, whatever the training used.
    save_checkpoint(tmp_path / "c.pt", "pretrain", {}, {}, method.state_dict(), step=0)
    saved = load_checkpoint(tmp_path / "c.pt")["model"]
    assert all(t.is_contiguous() for t in saved.values())
    torch.testing.assert_close(saved["encoder.backbone.features.3.weight"], conv)
