"""Checkpoints used elsewhere: rebuilding encoders, exporting backbones for torchvision."""

import pytest
import torch
from torch import nn
from torchvision import models as tvm

from nacvae.errors import CheckpointError, ConfigError
from nacvae.runs import CHECKPOINT
from nacvae.train.config import resolve_config
from nacvae.train.pretrain import pretrain
from nacvae.transfer import checkpoint_path, export_backbone, load_encoder, random_encoder


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    cfg = resolve_config("digits", arch="resnet18", epochs=1, batch_size=512, code_dim=8)
    return pretrain(cfg, tmp_path_factory.mktemp("runs") / "r18", progress=False)


def test_load_encoder_restores_exact_weights(resnet_run):
    from nacvae.checkpoint import load_checkpoint

    encoder, meta = load_encoder(checkpoint_path(run=resnet_run), arch="resnet18", image_shape=(1, 8, 8))
    saved = load_checkpoint(resnet_run / CHECKPOINT)["model"]
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, saved["encoder." + key])
    assert meta["objective"] == "nac" and meta["feature_dim"] == 512


def test_mismatches_are_reported(resnet_run):
    with pytest.raises(CheckpointError, match="arch 'resnet18'"):
        load_encoder(resnet_run / CHECKPOINT, arch="smallconv")
    with pytest.raises(CheckpointError, match="image_shape"):
        load_encoder(resnet_run / CHECKPOINT, image_shape=(3, 32, 32))
    with pytest.raises(ConfigError, match="exactly one"):
        checkpoint_path()


def test_exported_backbone_loads_into_plain_torchvision(resnet_run, tmp_path):
    export_backbone(resnet_run / CHECKPOINT, tmp_path / "backbone.pt")
    sd = torch.load(tmp_path / "backbone.pt", weights_only=True)
    plain = tvm.resnet18(weights=None)
    plain.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    plain.maxpool = nn.Identity()
    plain.fc = nn.Identity()
    plain.load_state_dict(sd)
    encoder, _ = load_encoder(resnet_run / CHECKPOINT)
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(plain.eval()(x), encoder.backbone.eval()(x))


def test_random_encoder_is_seeded():
    a, meta = random_encoder("smallconv", (1, 8, 8), seed=3)
    b, _ = random_encoder("smallconv", (1, 8, 8), seed=3)
    assert meta["objective"] == "random"
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
