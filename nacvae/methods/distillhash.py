"""DistillHash: the teacher's most and least similar pairs, distilled by two fractions,
and a likelihood of the codes' inner products (docs/method.md, "Baselines")."""

from __future__ import annotations

from torch import nn

from nacvae.methods.base import Method
from nacvae.methods.pairs import TeacherPairs
from nacvae.models.heads import PretrainEncoder
from nacvae.objectives import distill_thresholds, distilled_pairs, distillhash_loss
from nacvae.registry import MethodSpec, Option

SPEC = MethodSpec(
    name="distillhash",
    summary="DistillHash: codes from the teacher's distilled pairs",
    reference="Yang et al., CVPR 2019",
    order=6,
    streams=False,  # the teacher's features of every training image
    options=(
        Option("teacher", None, kind="path", required=True,
               help="A pretraining run, checkpoint or backbone state dict whose features give the pair "
                    "similarities."),
    ),
)


class DistillHash(TeacherPairs):
    def __init__(self, encoder: PretrainEncoder, teacher: nn.Module, similar_fraction: float = 0.05,
                 dissimilar_fraction: float = 0.5, seed: int = 0) -> None:
        super().__init__(encoder, teacher, seed)
        self.similar_fraction, self.dissimilar_fraction = similar_fraction, dissimilar_fraction

    def fit_thresholds(self, distances):
        return distill_thresholds(distances, self.similar_fraction, self.dissimilar_fraction)

    def loss(self, x1, x2, generator):
        h, d, a1 = self._pairs(x1, x2)
        return distillhash_loss(h, *distilled_pairs(d, *self.thresholds)), a1


def build(encoder: PretrainEncoder, options: dict, *, seed: int, teacher=None) -> Method:
    return DistillHash(encoder, teacher, seed=seed)
