import math

import pytest
import torch
import torch.nn as nn

from nacvae.errors import ConfigError, DataError, TrainingError
from nacvae.eval.linear import extract_features, train_linear_classifier, train_linear_probe_augmented

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n_per_class, classes=5, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(classes, dim, generator=g)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    features = centres[labels] + 0.3 * torch.randn(len(labels), dim, generator=g)
    return features, labels


def test_separable_features_are_learned():
    x, y = blobs(100, seed=0)
    xt, yt = blobs(40, seed=0)
    xt = xt + 0.3 * torch.randn(xt.shape, generator=torch.Generator().manual_seed(1))
    out = train_linear_classifier(x, y, xt, yt, num_classes=5, epochs=10, batch_size=50)
    assert out["test_accuracy"] > 0.95 and out["train_accuracy"] > 0.95
    assert out["protocol"] == "fast" and out["epochs"] == 10 and out["steps"] == 100
    assert 0.0 <= out["test_accuracy"] <= 1.0
    again = train_linear_classifier(x, y, xt, yt, num_classes=5, epochs=10, batch_size=50)
    assert again == out


def test_shuffled_labels_give_chance():
    x, y = blobs(100, seed=0)
    xt, yt = blobs(100, seed=1)
    g = torch.Generator().manual_seed(2)
    y = y[torch.randperm(len(y), generator=g)]
    yt = yt[torch.randperm(len(yt), generator=g)]
    out = train_linear_classifier(x, y, xt, yt, num_classes=5, epochs=10, batch_size=50)
    assert out["test_accuracy"] < 0.35


def test_bad_options():
    x, y = blobs(4)
    with pytest.raises(ConfigError):
        train_linear_classifier(x, y, x, y, num_classes=5, epochs=0)
    with pytest.raises(ConfigError):
        train_linear_classifier(x, y, x, y, num_classes=5, lr=-1.0)
    with pytest.raises(DataError):
        train_linear_classifier(x, y, x, y, num_classes=3)
    with pytest.raises(DataError):
        train_linear_classifier(x, y, x[:, :3], y, num_classes=5)
    with pytest.raises(TrainingError):
        train_linear_classifier(x * 1e30, y, x, y, num_classes=5, epochs=3, lr=1e10)


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3))


def coloured_images(n_per_class, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    base = torch.randint(0, 60, (len(labels), 3, 8, 8), generator=g)
    base[torch.arange(len(labels)), labels] += 180  # one bright channel per class
    return base.to(torch.uint8), labels


def normalize(batch):
    return batch.float() / 255.0 - 0.5


def augment(batch, generator):
    flip = torch.rand(len(batch), generator=generator) < 0.5
    batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
    return normalize(batch)


def test_augmented_probe_keeps_backbone_frozen():
    torch.manual_seed(0)
    net = TinyNet()
    net.train()
    with torch.no_grad():  # non-trivial running statistics
        net(torch.randn(16, 3, 8, 8))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    images, labels = coloured_images(20)
    test_images, test_labels = coloured_images(10, seed=1)
    out = train_linear_probe_augmented(
        net, images, labels, test_images, test_labels, num_classes=3,
        augment_fn=augment, normalize_fn=normalize, epochs=30, batch_size=20, lr=1.0, seed=0,
    )
    assert not net.training
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert out["protocol"] == "paper" and out["feature_dim"] == 8
    assert 0.0 <= out["train_accuracy"] <= 1.0
    assert out["test_accuracy"] > 0.9


def test_extract_features():
    net = TinyNet()
    images, _ = coloured_images(5)
    feats = extract_features(net, images, normalize, batch_size=4)
    assert feats.shape == (15, 8) and not net.training
    with torch.no_grad():
        assert torch.allclose(feats, net(normalize(images)), atol=1e-6)
    with pytest.raises(DataError):
        extract_features(net, images.float(), normalize)


def test_index_tensors_go_to_the_device_once_per_epoch(monkeypatch):
    """A step indexes with a slice of the epoch's order already on the device: the only
    integer tensors copied with ``.to`` are the labels (once) and each epoch's order."""
    x, y = blobs(60, seed=0)
    moved = []
    real_to = torch.Tensor.to

    def counting_to(self, *args, **kwargs):
        if not self.dtype.is_floating_point and self.dtype != torch.bool:
            moved.append(tuple(self.shape))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", counting_to)
    out = train_linear_classifier(x, y, x, y, num_classes=5, epochs=3, batch_size=20)
    assert out["steps"] == 3 * 15
    assert moved == [(300,)] * 4  # labels, then one order per epoch


@pytest.mark.parametrize("nesterov,weight_decay", [(True, 0.0), (False, 1e-3), (True, 5e-4)])
def test_the_probe_s_sgd_is_torch_s_bit_for_bit(nesterov, weight_decay):
    from nacvae.eval.linear import ProbeSGD

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    mine, theirs = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)
    theirs.load_state_dict(mine.state_dict())
    ours = ProbeSGD(list(mine.parameters()), 0.9, nesterov, weight_decay)
    ref = torch.optim.SGD(theirs.parameters(), lr=0.0, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay)
    for step in range(7):
        lr = 0.5 * (1 + math.cos(math.pi * step / 7))
        ours.lr = lr
        for group in ref.param_groups:
            group["lr"] = lr
        for model, opt in ((mine, ours), (theirs, ref)):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x[step::7]), y[step::7]).backward()
            opt.step()
        for a, b in zip(mine.parameters(), theirs.parameters()):
            assert torch.equal(a, b), step
