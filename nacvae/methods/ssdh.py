"""SSDH: pair labels from the teacher's cosine distances, cut at thresholds fitted to
their distribution (two half-Gaussians), and codes whose inner products match them.

Its recipe is the public PyTorch port (TreezzZ/SSDH_PyTorch; the paper's text could not be
read beyond its opening): the student is the pretrained network itself, fine-tuned end to
end with its last layer replaced by one Linear -> tanh hash layer; SGD lr 1e-3, momentum
0.9, weight decay 1e-5, batch 24, one view; the loss over the whole N x N batch, diagonal
included, divided by N^2; the mode at the fullest 0.01-wide bin on [0, 1]; alpha = beta = 2.
"""

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
    head="linear",
    start="teacher",
    views=1,
    recipe=dict(optimizer="sgd", lr=1e-3, weight_decay=1e-5, batch_size=24, warmup_steps=0, schedule="step"),
    options=(
        Option("teacher", None, kind="path", required=True,
               help="A pretraining run, checkpoint or backbone state dict whose features give the pair "
                    "similarities (and, under SSDH's recipe, the student's starting weights)."),
        Option("alpha", 2.0, low=0.0, help="Similar pairs lie below the mode minus alpha times the left spread."),
        Option("beta", 2.0, low=0.0, help="Dissimilar pairs lie above the mode plus beta times the right spread."),
    ),
)


class SSDH(TeacherPairs):
    """``port=True`` is the recipe's loss and mode (N x N with the diagonal, 0.01 bins on
    [0, 1]); ``port=False`` the shared recipe's (pairs i != j, 100 bins over [min, max])."""

    def __init__(self, encoder: PretrainEncoder, teacher: nn.Module, alpha: float = 2.0, beta: float = 2.0,
                 seed: int = 0, port: bool = False) -> None:
        super().__init__(encoder, teacher, seed)
        self.alpha, self.beta, self.port = alpha, beta, port

    def fit_thresholds(self, distances):
        fit = fit_half_gaussians(distances, 100, (0.0, 1.0)) if self.port else fit_half_gaussians(distances)
        return fit.thresholds(self.alpha, self.beta)

    def loss(self, x1, x2, generator):
        h, d, a1 = self._pairs(x1, x2)
        return ssdh_loss(h, pseudo_similarity(d, *self.thresholds), diagonal=self.port), a1


def build(encoder: PretrainEncoder, options: dict, *, seed: int, teacher=None, recipe: str = "own") -> Method:
    return SSDH(encoder, teacher, options["alpha"], options["beta"], seed=seed, port=recipe == "own")
