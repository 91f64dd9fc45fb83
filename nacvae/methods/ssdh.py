"""SSDH: pair labels from the teacher's cosine distances, cut at thresholds fitted to
their distribution (two half-Gaussians), and codes whose inner products match them."""

from __future__ import annotations

from torch import nn

from nacvae.methods.base import Method
from nacvae.methods.pairs import TeacherPairs
from nacvae.models.heads import PretrainEncoder
from nacvae.objectives import fit_half_gaussians, pseudo_similarity, ssdh_loss
from nacvae.registry import MethodSpec, Option

SPEC = MethodSpec(
    name="ssdh",
    summary="SSDH: codes that match the teacher's similar and dissimilar pairs",
    reference="Yang et al., IJCAI 2018",
    order=5,
    streams=False,  # the teacher's features of every training image
    options=(
        Option("teacher", None, kind="path", required=True,
               help="A pretraining run, checkpoint or backbone state dict whose features give the pair "
                    "similarities."),
    ),
)


class SSDH(TeacherPairs):
    def __init__(self, encoder: PretrainEncoder, teacher: nn.Module, alpha: float = 2.0, beta: float = 2.0,
                 seed: int = 0) -> None:
        super().__init__(encoder, teacher, seed)
        self.alpha, self.beta = alpha, beta

    def fit_thresholds(self, distances):
        return fit_half_gaussians(distances).thresholds(self.alpha, self.beta)

    def loss(self, x1, x2, generator):
        h, d, a1 = self._pairs(x1, x2)
        return ssdh_loss(h, pseudo_similarity(d, *self.thresholds)), a1


def build(encoder: PretrainEncoder, options: dict, *, seed: int, teacher=None) -> Method:
    return SSDH(encoder, teacher, seed=seed)
