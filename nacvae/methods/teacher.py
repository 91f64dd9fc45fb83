"""The fixed network whose features give SSDH and DistillHash their pseudo-similarities.

``--teacher PATH`` names a nacvae pretraining run folder, a pretraining checkpoint, or a plain
backbone state dict with torchvision's key names (what ``nacvae export`` writes, or a user's
own ImageNet VGG-16-BN / ResNet weights of a supported architecture). Every way it can fail is
one sentence. A torchvision ImageNet classifier's state dict (resnet18, resnet50, vgg16,
vgg16_bn) is used without its last layer, as SSDH used VGG's fc7 features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torchvision.models as tvm
from torch import nn

from nacvae.checkpoint import FORMAT
from nacvae.data.augment import normalize
from nacvae.errors import CheckpointError, ConfigError
from nacvae.models.backbones import ARCHITECTURES, build_backbone
from nacvae.runs import CHECKPOINT
from nacvae.transfer import load_encoder


def load_teacher(path: str | Path, image_shape: tuple[int, int, int]) -> tuple[nn.Module, dict[str, Any]]:
    """(backbone in eval mode on the CPU, description) of the teacher at ``path`` for images
    of ``image_shape`` (C, H, W)."""

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--teacher {path} does not exist.")
    if path.is_dir():
        if not (path / CHECKPOINT).is_file():
            raise CheckpointError(f"--teacher {path} is a folder but not a pretraining run (no {CHECKPOINT}).")
        path = path / CHECKPOINT
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on damaged or foreign files
        raise CheckpointError(
            f"--teacher {path} is not a readable checkpoint or state-dict file ({type(exc).__name__})."
        ) from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        if obj.get("kind") != "pretrain":
            raise CheckpointError(f"--teacher {path} is a {obj.get('kind')} checkpoint, not a pretraining checkpoint.")
        have = list(obj.get("meta", {}).get("image_shape") or [])
        if have != list(image_shape):
            raise CheckpointError(
                f"--teacher {path} was trained on images of shape {tuple(have)}, not the {tuple(image_shape)} of this dataset."
            )
        del obj
        encoder, meta = load_encoder(path)
        return encoder.backbone.eval(), {"teacher": str(path), "teacher_arch": meta["arch"],
                                         "teacher_objective": meta["objective"]}
    if not (isinstance(obj, dict) and obj and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in obj.items())):
        raise CheckpointError(f"--teacher {path} is neither a nacvae checkpoint nor a plain state dict of tensors.")
    backbone, arch = _backbone_for(obj, image_shape)
    if backbone is None:
        raise CheckpointError(
            f"--teacher {path} does not hold the weights of a supported backbone "
            f"({', '.join(ARCHITECTURES)}, or torchvision's {', '.join(IMAGENET_ARCHITECTURES)}) "
            f"that runs on {image_shape[0]}-channel {image_shape[1]}x{image_shape[2]} images."
        )
    return backbone.eval(), {"teacher": str(path), "teacher_arch": arch, "teacher_objective": None}


class ImageNetFeatures(nn.Module):
    """A torchvision ImageNet classifier without its last layer: ResNets give their pooled
    features, VGGs their fc7 activations (what SSDH used). Grey images are repeated into
    the three channels the network expects."""

    def __init__(self, net: nn.Module, in_channels: int) -> None:
        super().__init__()
        if hasattr(net, "fc"):
            net.fc = nn.Identity()
        else:
            net.classifier = net.classifier[:5]  # fc6, ReLU, dropout, fc7, ReLU
        self.net, self.in_channels = net, in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x)


IMAGENET_ARCHITECTURES = ("resnet18", "resnet50", "vgg16", "vgg16_bn")


def _candidates(image_shape):
    """(name, builder) of every network a plain state dict may hold: nacvae's backbones for
    these images, then torchvision's ImageNet classifiers."""


    for arch in ARCHITECTURES:
        yield arch, lambda arch=arch: build_backbone(arch, image_shape[0], image_shape[1])[0]
    if image_shape[0] in (1, 3):
        for arch in IMAGENET_ARCHITECTURES:
            yield f"torchvision {arch} (ImageNet layout)", lambda arch=arch: getattr(tvm, arch)(weights=None)


def _backbone_for(state: dict[str, torch.Tensor], image_shape) -> tuple[nn.Module | None, str | None]:
    """The first supported network that loads ``state`` exactly and runs on these images."""
    for name, build in _candidates(image_shape):
        try:
            net = build()
        except ConfigError:  # images too small for this architecture
            continue
        if set(net.state_dict()) != set(state):
            continue
        try:
            net.load_state_dict(state)
        except RuntimeError:  # same names, other shapes (another width or channel count)
            continue
        if name.startswith("torchvision"):
            net = ImageNetFeatures(net, image_shape[0])
        try:
            with torch.no_grad():
                net.eval()(torch.zeros(1, *image_shape))
        except RuntimeError:  # too many poolings for images this small
            continue
        return net, name
    return None, None


@torch.no_grad()
def teacher_features(backbone: nn.Module, images: torch.Tensor, mean, std, batch_size: int = 256) -> torch.Tensor:
    """Float32 features [N, F] of uint8 images [N, C, H, W] (normalised as for evaluation),
    on the images' device, the backbone in eval mode."""

    backbone = backbone.to(images.device).eval()
    parts = [backbone(normalize(images[s:s + batch_size], mean, std)).float()
             for s in range(0, len(images), batch_size)]
    return torch.cat(parts)


def adopt_backbone(backbone: nn.Module, teacher: nn.Module, why: str) -> None:
    """Copy the teacher's weights into ``backbone`` (a method that starts from its teacher);
    they must be a backbone of its kind. ``why`` completes "--objective ..." in the error."""
    mine, theirs = backbone.state_dict(), teacher.state_dict()
    if set(mine) != set(theirs) or any(mine[k].shape != theirs[k].shape for k in mine):
        raise ConfigError(f"--objective {why}, so the teacher must be a backbone of the run's --arch, "
                          f"and this one is not.")
    backbone.load_state_dict(theirs)
