"""DeepBit: bit probabilities sigmoid(a) of a view and of its rotations, trained to be
quantised, balanced and rotation-invariant (docs/method.md, "Baselines").

Its recipe is the authors' release (kevinlin311tw/cvpr16-deepbit, CIFAR-10 examples): one
linear hash layer with weights N(0, 0.01^2) and bias 0 on a frozen pretrained backbone, SGD
lr 1e-3 (x0.1 at 25k of the release's 55k iterations), momentum 0.9, weight decay 5e-4,
batch 32, one view; stage 1 (the first 50k) quantisation + balance at weights 1 and 1, stage
2 (the last 5k) adds the rotation term at weight 0.001 over -10, -5, 0, 5, 10 degrees with
C(theta) = exp(-(theta/5)^2 / 2); codes are sigmoid(a) above each bit's mean over the
training images.
"""

from __future__ import annotations

import math

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
    head="linear",
    head_std=0.01,
    start="frozen-teacher",
    views=1,
    binarisation="sigmoid-mean",
    recipe=dict(optimizer="sgd", lr=1e-3, weight_decay=5e-4, batch_size=32, warmup_steps=0, schedule="step",
                lr_drops=(25_000 / 55_000,)),
    options=(
        Option("teacher", None, kind="path",
               help="A backbone of the run's --arch (a pretraining run, checkpoint or plain backbone state dict) "
                    "whose frozen weights the hash layer trains on."),
        Option("rotation_weight", 0.001, low=0.0,
               help="Weight of the rotation-invariance term in the second stage."),
        Option("rotation_fraction", 5_000 / 55_000, low=0.0, high=1.0, high_open=False,
               help="The fraction of the run, at its end, that is the second stage (with the rotation term)."),
    ),
)

# The release's rotations and their weights C(theta) = exp(-(theta / 5)^2 / 2).
ANGLES = (-10.0, -5.0, 0.0, 5.0, 10.0)
SHARED_ANGLES, SHARED_ROTATION_WEIGHTS = (-10.0, 10.0), (1.0, 1.0)  # --recipe shared: all three terms at weight 1


def rotation_weights(angles=ANGLES) -> tuple[float, ...]:
    return tuple(math.exp(-0.5 * (theta / 5.0) ** 2) for theta in angles)


class DeepBit(Method):
    """With ``frozen_backbone`` only the head (the hash layer) learns, as in the authors'
    release, which trains a hash layer on a fixed ImageNet network; the backbone also stays
    in eval mode, so its batch-norm statistics remain those it was given.

    ``rotation_fraction`` is the fraction of the run, at its end, with the rotation term on
    (1: the whole run, the shared recipe's single stage).
    """

    def __init__(self, encoder: PretrainEncoder, angles: tuple[float, ...] = SHARED_ANGLES,
                 rotation_weights: tuple[float, ...] = SHARED_ROTATION_WEIGHTS,
                 weights: tuple[float, float, float] = (1.0, 1.0, 1.0), frozen_backbone: bool = False,
                 rotation_fraction: float = 1.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.angles, self.rotation_weights, self.weights = angles, rotation_weights, weights
        self.frozen_backbone = frozen_backbone
        self.rotation_fraction = rotation_fraction
        self.rotating = rotation_fraction == 1.0
        if frozen_backbone:
            encoder.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> "DeepBit":
        super().train(mode)
        if self.frozen_backbone:
            self.encoder.backbone.eval()
        return self

    def at_step(self, step: int, total_steps: int) -> None:
        self.rotating = step >= total_steps - round(self.rotation_fraction * total_steps)

    def loss(self, x1, x2, generator):
        alpha, beta, gamma = self.weights
        if not self.rotating or gamma == 0.0:
            _, (a, _), _ = self._encode_pair(x1, None, self.query_encoder)
            return deepbit_loss(torch.sigmoid(a), (), (), alpha, beta, 0.0), a
        # A rotation by 0 degrees is the image itself (its term is 0), not a resampled copy.
        turned = [angle for angle in self.angles if angle != 0.0]
        weights = [c for angle, c in zip(self.angles, self.rotation_weights) if angle != 0.0]
        rotated = torch.cat([rotate_images(x1, angle) for angle in turned], dim=0)
        _, (a, a_rot), _ = self._encode_pair(x1, rotated, self.query_encoder)
        p = torch.sigmoid(a)
        p_rot = torch.sigmoid(a_rot).chunk(len(turned), dim=0)
        return deepbit_loss(p, p_rot, weights, alpha, beta, gamma), a


def build(encoder: PretrainEncoder, options: dict, *, seed: int, teacher=None, recipe: str = "own") -> Method:
    if teacher is not None:
        adopt_backbone(encoder.backbone, teacher, "deepbit trains its hash layer on the --teacher's frozen backbone")
    if recipe == "shared":
        return DeepBit(encoder, frozen_backbone=teacher is not None)
    return DeepBit(encoder, ANGLES, rotation_weights(), (1.0, 1.0, options["rotation_weight"]), frozen_backbone=True,
                   rotation_fraction=options["rotation_fraction"])
