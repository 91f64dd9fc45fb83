"""Backbones: feature extractors mapping normalised images [B, C, H, W] to features [B, F].

ResNets and VGG-16-BN keep torchvision's module names, so their state dicts load into a
torchvision model once its stem is adapted the same way (see ``docs/guide.md``). ResNets
have two stems, chosen by the dataset (``stem_for``): the CIFAR stem (3x3 stride-1
convolution, no max-pool) for small images, and torchvision's own ImageNet stem (7x7
stride-2 convolution, max-pool) for the 224-px datasets, whose state dicts load into
``torchvision.models.resnet50()`` unchanged (all but ``fc``).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from nacvae.errors import ConfigError

# Datasets of ImageNet-size images, whose ResNets keep torchvision's stem.
IMAGENET_STEM_DATASETS = ("imagenet", "flickr25k")
IMAGENET_STEM_PREFIXES = ("webdataset:",)
STEMS = ("cifar", "imagenet")


def stem_for(dataset: str | None) -> str:
    """The ResNet stem a dataset's encoders use: "imagenet" for ImageNet-size data, else "cifar"."""
    name = (dataset or "").lower()
    if name in IMAGENET_STEM_DATASETS or name.startswith(IMAGENET_STEM_PREFIXES):
        return "imagenet"
    return "cifar"


def _torchvision_model(name: str) -> nn.Module:
    """A torchvision network, untrained. Imported here: torchvision's import (about 1.5 s, most
    of it torch._dynamo through torchvision.ops) would otherwise delay every command that
    only needs the small conv net."""
    from torchvision import models

    return getattr(models, name)(weights=None)


def _imagenet_resnet(name: str, in_channels: int) -> tuple[nn.Module, int]:
    net = _torchvision_model(name)
    feature_dim = net.fc.in_features
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()
    return net, feature_dim


def _cifar_resnet(name: str, in_channels: int) -> tuple[nn.Module, int]:
    net = _torchvision_model(name)
    feature_dim = net.fc.in_features
    # CIFAR stem: 3x3 stride-1 convolution without bias, no max-pool (docs/method.md, "Networks").
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net, feature_dim


class VGG16BN(nn.Module):
    """VGG-16 with batch norm, classifier removed, adaptive average pool to 1x1 (512-d)."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        net = _torchvision_model("vgg16_bn")
        if in_channels != 3:
            net.features[0] = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1)
        self.features = net.features
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.features(x)), 1)


class SmallConvNet(nn.Module):
    """A four-block conv net (32-64-128-256 channels) for CPU-scale work; 256-d features."""

    def __init__(self, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        chans = [in_channels, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            stride = 1 if i == 0 else 2
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


def _vgg(in_channels: int) -> tuple[nn.Module, int]:
    return VGG16BN(in_channels), 512


def _small(in_channels: int) -> tuple[nn.Module, int]:
    net = SmallConvNet(in_channels)
    return net, net.out_dim


# name -> builder(in_channels) -> (module, feature_dim); min_size is the smallest input side.
ARCHITECTURES: dict[str, tuple[Callable[[int], tuple[nn.Module, int]], int]] = {
    "smallconv": (_small, 8),
    "resnet18": (lambda c: _cifar_resnet("resnet18", c), 8),
    "resnet50": (lambda c: _cifar_resnet("resnet50", c), 8),
    "vgg16_bn": (_vgg, 32),
}


_IMAGENET_RESNETS = ("resnet18", "resnet50")
# The ImageNet stem divides the side by 32 before the pooling: smaller images vanish.
_IMAGENET_MIN_SIZE = 32


def build_backbone(arch: str, in_channels: int, image_size: int | None = None,
                   stem: str = "cifar") -> tuple[nn.Module, int]:
    """Build a backbone by name; returns (module, feature dimension).

    ``stem`` ("cifar" or "imagenet", see ``stem_for``) applies to the ResNets only.
    """
    if arch not in ARCHITECTURES:
        raise ConfigError(f"Unknown architecture '{arch}'; choose one of {', '.join(ARCHITECTURES)}.")
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}")
    builder, min_size = ARCHITECTURES[arch]
    if stem == "imagenet" and arch in _IMAGENET_RESNETS:
        builder, min_size = (lambda c: _imagenet_resnet(arch, c)), _IMAGENET_MIN_SIZE
    if image_size is not None and image_size < min_size:
        raise ConfigError(
            f"Architecture '{arch}' needs images of at least {min_size}x{min_size}, got {image_size}x{image_size}."
        )
    return builder(in_channels)


def fast_layout(module: nn.Module, device: torch.device | str) -> nn.Module:
    """``module`` on ``device`` with its 4-D weights channels-last (NHWC), in place.

    oneDNN (CPU) and cuDNN (CUDA) then run convolutions without layout reorders: a small
    conv net's forward pass is about a third faster on a 2-core CPU. A convolution with
    channels-last weights returns channels-last output whatever its input's layout, so
    inputs need no conversion; values are unchanged up to float rounding.

    Not for modules registered with Pyro: its param store keeps contiguous copies of
    channels-last parameters, which would then be trained instead of the module's.
    """
    return module.to(device=device, memory_format=torch.channels_last)

