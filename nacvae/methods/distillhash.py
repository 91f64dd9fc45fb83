"""DistillHash: the teacher's most and least similar pairs, distilled by two fractions,
and a likelihood of the codes' inner products (docs/method.md, "Baselines").

The paper's distillation criterion (its section 3, hyper-parameters o and p) could not be
read here, and no public implementation was found: the quantile rule is a stand-in. Its
recipe otherwise follows SSDH's, the same authors' earlier method, which DistillHash builds
on: the student starts from the teacher, fine-tuned end to end under one Linear -> tanh hash
layer, SGD lr 1e-3, momentum 0.9, weight decay 1e-5, batch 24, one view.
"""

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
    head="linear",
    start="teacher",
    views=1,
    recipe=dict(optimizer="sgd", lr=1e-3, weight_decay=1e-5, batch_size=24, warmup_steps=0, schedule="step"),
    options=(
        Option("teacher", None, kind="path", required=True,
               help="A pretraining run, checkpoint or backbone state dict whose features give the pair "
                    "similarities (and, under DistillHash's recipe, the student's starting weights)."),
        Option("similar_fraction", 0.05, low=0.0, high=1.0, low_open=True,
               help="The closest fraction of the teacher's pairs, labelled similar."),
        Option("dissimilar_fraction", 0.5, low=0.0, high=1.0, low_open=True,
               help="The farthest fraction of the teacher's pairs, labelled dissimilar."),
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


def build(encoder: PretrainEncoder, options: dict, *, seed: int, teacher=None, recipe: str = "own") -> Method:
    return DistillHash(encoder, teacher, options["similar_fraction"], options["dissimilar_fraction"], seed=seed)
