"""DeepBit: bit probabilities sigmoid(a) of a view and of its rotations, trained to be
quantised, balanced and rotation-invariant (docs/method.md, "Baselines")."""

from __future__ import annotations

import torch

from nacvae.methods.base import Method
from nacvae.methods.teacher import adopt_backbone
from nacvae.models.heads import PretrainEncoder
from nacvae.objectives import deepbit_loss, rotate_images
from nacvae.registry import MethodSpec, Option

SPEC = MethodSpec(
    name="deepbit",
    summary="DeepBit: quantised, balanced, rotation-invariant bits",
    reference="Lin et al., CVPR 2016",
    order=4,
    options=(
        Option("teacher", None, kind="path",
               help="A backbone of the run's --arch (a pretraining run, checkpoint or plain backbone state dict) "
                    "whose frozen weights the hash layer trains on."),
    ),
)


class DeepBit(Method):
    """With ``frozen_backbone`` only the head (the hash layer) learns, as in the authors'
    release, which trains a hash layer on a fixed ImageNet network; the backbone also stays
    in eval mode, so its batch-norm statistics remain those it was given.
    """

    def __init__(self, encoder: PretrainEncoder, angles: tuple[float, ...] = (-10.0, 10.0),
                 rotation_weights: tuple[float, ...] = (1.0, 1.0), weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 frozen_backbone: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.angles, self.rotation_weights, self.weights = angles, rotation_weights, weights
        self.frozen_backbone = frozen_backbone
        if frozen_backbone:
            encoder.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> "DeepBit":
        super().train(mode)
        if self.frozen_backbone:
            self.encoder.backbone.eval()
        return self

    def loss(self, x1, x2, generator):
        rotated = torch.cat([rotate_images(x1, angle) for angle in self.angles], dim=0)
        _, (a, a_rot), _ = self._encode_pair(x1, rotated, self.query_encoder)
        p = torch.sigmoid(a)
        p_rot = torch.sigmoid(a_rot).chunk(len(self.angles), dim=0)
        alpha, beta, gamma = self.weights
        return deepbit_loss(p, p_rot, self.rotation_weights, alpha, beta, gamma), a


def build(encoder: PretrainEncoder, options: dict, *, seed: int, teacher=None) -> Method:
    if teacher is not None:
        adopt_backbone(encoder.backbone, teacher, "deepbit trains its hash layer on the --teacher's frozen backbone")
    return DeepBit(encoder, frozen_backbone=teacher is not None)
