import copy
import math

import pytest
import torch
from torch import nn
from torchvision import models as tvm

from nacvae.errors import ConfigError
from nacvae.models.backbones import build_backbone
from nacvae.models.heads import PretrainEncoder, ScaledMLP, ema_copy, ema_update


@pytest.mark.parametrize("arch,dim", [("smallconv", 256), ("resnet18", 512)])
@pytest.mark.parametrize("channels,size", [(1, 8), (3, 32)])
def test_feature_shapes(arch, dim, channels, size):
    net, feature_dim = build_backbone(arch, channels, size)
    assert feature_dim == dim
    net.eval()
    assert net(torch.randn(2, channels, size, size)).shape == (2, dim)


def test_resnet_weights_load_into_plain_torchvision_model():
    net, _ = build_backbone("resnet18", 3, 32)
    net.eval()
    plain = tvm.resnet18(weights=None)
    plain.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    plain.maxpool = nn.Identity()
    plain.fc = nn.Identity()
    plain.load_state_dict(net.state_dict())  # strict: identical key names
    plain.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(plain(x), net(x))
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and net.conv1.bias is None


def test_vgg_keys_match_torchvision_features():
    net, dim = build_backbone("vgg16_bn", 3, 32)
    assert dim == 512
    plain = tvm.vgg16_bn(weights=None)
    ours = {k for k in net.state_dict() if k.startswith("features.")}
    assert ours == {k for k in plain.state_dict() if k.startswith("features.")}
    with pytest.raises(ConfigError, match="at least 32x32"):
        build_backbone("vgg16_bn", 1, 8)


def test_unknown_architecture():
    with pytest.raises(ConfigError, match="Unknown architecture"):
        build_backbone("resnet7", 3, 32)


def test_heads_scale_by_sqrt_d():
    head = ScaledMLP(6, 16)
    h = torch.randn(3, 6)
    torch.testing.assert_close(head(h), head.net(h) / math.sqrt(16))


def test_encoder_outputs_and_codes():
    backbone, f = build_backbone("smallconv", 1, 8)
    enc = PretrainEncoder(backbone, f, 32).eval()
    x = torch.randn(4, 1, 8, 8)
    h, a, l = enc(x)
    assert h.shape == (4, f) and a.shape == (4, 32) and l.shape == (4, 32)
    assert torch.equal(enc.codes(x), a > 0)
    assert PretrainEncoder(backbone, f, 32, predictor=False)(x)[2] is None


def test_ema_update():
    q = nn.Linear(2, 2)
    k = ema_copy(q)
    assert all(not p.requires_grad for p in k.parameters())
    before = k.weight.detach().clone()
    with torch.no_grad():
        q.weight.add_(1.0)
    ema_update(k, q, 0.9)
    torch.testing.assert_close(k.weight, 0.9 * before + 0.1 * q.weight.detach())


def test_ema_update_multi_tensor_equals_the_per_tensor_loop():
    torch.manual_seed(0)
    query, _ = build_backbone("smallconv", 1, 8)
    key = ema_copy(query)
    with torch.no_grad():
        for p in query.parameters():
            p.add_(torch.randn_like(p))
        query(torch.randn(4, 1, 8, 8))  # moves the batch-norm statistics
    ref = copy.deepcopy(key)
    with torch.no_grad():
        for pk, pq in zip(ref.parameters(), query.parameters()):
            pk.mul_(0.99).add_(pq, alpha=1.0 - 0.99)
        for bk, bq in zip(ref.buffers(), query.buffers()):
            bk.copy_(bq)
    ema_update(key, query, 0.99)
    assert len(list(key.buffers())) > 0
    for (name, a), b in zip(key.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_imagenet_stem_is_torchvisions_own(arch):
    """The ImageNet-size datasets' ResNets load into torchvision's model as is, fc aside."""
    import torchvision

    from nacvae.models.backbones import build_backbone, stem_for

    assert stem_for("imagenet") == stem_for("flickr25k") == stem_for("webdataset:/s-{0..9}.tar") == "imagenet"
    assert stem_for("cifar10") == stem_for("folder:/x") == stem_for(None) == "cifar"
    backbone, feature_dim = build_backbone(arch, 3, 224, stem="imagenet")
    model = getattr(torchvision.models, arch)()
    state = backbone.state_dict()
    model.load_state_dict({**state, "fc.weight": model.fc.weight, "fc.bias": model.fc.bias}, strict=True)
    assert set(model.state_dict()) - set(state) == {"fc.weight", "fc.bias"}
    assert backbone.conv1.kernel_size == (7, 7) and backbone.conv1.stride == (2, 2)
    assert isinstance(backbone.maxpool, torch.nn.MaxPool2d) and feature_dim == model.fc.in_features
    cifar, _ = build_backbone(arch, 3, 32)
    assert cifar.conv1.kernel_size == (3, 3)
