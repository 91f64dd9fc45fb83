"""What SSDH and DistillHash share: pair labels from a fixed teacher's features."""

from __future__ import annotations

import torch
from torch import nn

from nacvae import distributed
from nacvae.methods.base import Method
from nacvae.methods.teacher import teacher_features
from nacvae.models.heads import PretrainEncoder
from nacvae.objectives import cosine_distances, pair_distances


class TeacherPairs(Method):
    """Pair labels from a fixed teacher's features.

    The teacher's features of every training image and the two distance thresholds are
    computed once (``attach_dataset``; on rank 0 and broadcast under torchrun) and kept out of
    the checkpoint: a resumed run recomputes them from the same teacher. With two views (the
    shared recipe) both views of each image are coded and the two views of an image are a
    pair at distance 0; with one (the methods' own recipes) the N images give N x N pairs.
    """

    max_threshold_images = 4000  # pairs of at most this many images estimate the thresholds

    def __init__(self, encoder: PretrainEncoder, teacher: nn.Module, seed: int = 0) -> None:
        super().__init__()
        self.encoder = encoder
        self.__dict__["teacher"] = teacher  # not a submodule: not trained, not checkpointed
        self.seed = seed
        self.thresholds: tuple[float, float] | None = None
        self._indices: torch.Tensor | None = None

    def attach_dataset(self, images, mean, std) -> None:
        features = nn.functional.normalize(teacher_features(self.teacher, images, mean, std), dim=1)
        g = torch.Generator().manual_seed(self.seed)
        d = pair_distances(features, self.max_threshold_images, g)
        limits = torch.tensor(self.fit_thresholds(d), dtype=torch.float64, device=features.device)
        if distributed.is_distributed():
            torch.distributed.broadcast(features, 0)
            torch.distributed.broadcast(limits, 0)
        self.register_buffer("teacher_features", features, persistent=False)
        self.thresholds = (float(limits[0]), float(limits[1]))

    def fit_thresholds(self, distances: torch.Tensor) -> tuple[float, float]:
        raise NotImplementedError

    def begin_step(self, indices: torch.Tensor) -> None:
        self._indices = indices

    def _pairs(self, x1, x2):
        if self._indices is None or self.thresholds is None:
            raise RuntimeError(f"{type(self).__name__} needs attach_dataset() and begin_step(indices)")
        _, (a1, a2), _ = self._encode_pair(x1, x2, self.query_encoder)
        feats = self.teacher_features[self._indices.to(self.teacher_features.device)]
        d = cosine_distances(feats)
        if a2 is None:
            return torch.tanh(a1), d.to(a1.dtype), a1
        h = torch.tanh(torch.cat([a1, a2], dim=0))
        d = torch.cat([torch.cat([d, d], dim=1)] * 2, dim=0).to(h.dtype)  # the same image in either view
        return h, d, a1
