"""SimCLR: NT-Xent between the two views' projections, the batch's other views as negatives."""

from __future__ import annotations

from nacvae.methods.base import Method
from nacvae.models.heads import PretrainEncoder
from nacvae.objectives import nt_xent
from nacvae.registry import MethodSpec, Option

SPEC = MethodSpec(
    name="simclr",
    summary="SimCLR: NT-Xent over the batch's views",
    reference="Chen et al., ICML 2020",
    group="main",
    order=1,
    options=(Option("temperature", 0.5, help="Softmax temperature.", low=0.0, low_open=True),),
)


class SimCLR(Method):
    def __init__(self, encoder: PretrainEncoder, temperature: float = 0.5) -> None:
        super().__init__()
        self.encoder = encoder
        self.temperature = temperature

    def loss(self, x1, x2, generator):
        _, (a1, a2), _ = self._encode_pair(x1, x2, self.query_encoder)
        return nt_xent(a1, a2, self.temperature, gather=self.gather), a1


def build(encoder: PretrainEncoder, options: dict, *, seed: int, teacher=None) -> Method:
    return SimCLR(encoder, options["temperature"])
