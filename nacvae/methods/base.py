"""The base of every pretraining method: an encoder and the state its objective needs.

A method maps a pair of augmented batches to a scalar loss; the training loop knows nothing
else about it. What a method is (name, options, recipe) is its module's ``SPEC``
(``nacvae.registry``); the objectives themselves are pure functions in ``nacvae.objectives``.
"""

from __future__ import annotations

import torch
from torch import nn

from nacvae.models.heads import PretrainEncoder
from nacvae.objectives.nac import Gather


class Method(nn.Module):
    """Base: ``loss(x1, x2, generator)`` and ``after_step()`` (for EMA updates).

    Encoders run under bf16 autocast when ``amp_dtype`` is set and take channels-last input
    when ``channels_last`` is set; their outputs are cast to float32 so that every objective
    computes in float32.
    """

    encoder: PretrainEncoder
    gather: Gather | None = None  # set for multi-process training (nacvae.distributed)
    gather_no_grad: Gather | None = None
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    def loss(self, x1: torch.Tensor, x2: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (loss, the view-1 code pre-activations a for code statistics)."""
        raise NotImplementedError

    def after_step(self) -> None:
        pass

    def attach_dataset(self, images: torch.Tensor, mean, std) -> None:
        """Called once with the training images (uint8, on the device) before any resume, for
        methods whose state depends on them (a memory bank, teacher features)."""

    def begin_step(self, indices: torch.Tensor) -> None:
        """Called before ``loss`` with the dataset rows of this process's batch."""

    def at_step(self, step: int, total_steps: int) -> None:
        """Called before ``loss`` with the step about to run (0-based) of the run's total, for
        methods whose loss changes with the stage of training (DeepBit's rotation stage)."""

    def num_negatives(self, global_batch: int) -> int | None:
        """For NAC: how many codes the negative term sums over, so that the loss of the
        trivial solution z = 0 is log of it. None for objectives without that property."""
        return None

    def wrap_encoder(self, wrapper: nn.Module | None) -> None:
        """Run the trainable encoder through ``wrapper`` (DistributedDataParallel around
        ``self.encoder``). It is kept out of the module tree, so state dicts keep their keys."""
        self.__dict__["_encoder_wrapper"] = wrapper

    @property
    def query_encoder(self) -> nn.Module:
        wrapper = self.__dict__.get("_encoder_wrapper")
        return self.encoder if wrapper is None else wrapper

    def _encode_pair(self, x1: torch.Tensor, x2: torch.Tensor | None, encoder: nn.Module):
        """((h1, h2), (a1, a2), (l1, l2)) of two views; with ``x2`` None (a method of one view
        per step) the second of each pair is None."""
        b = x1.shape[0]
        x = x1 if x2 is None else torch.cat([x1, x2], dim=0)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None):
            h, a, l = encoder(x)
        # Half-precision outputs of autocast become float32; float64 stays float64.
        as_float = lambda t: t.float() if t is not None and t.element_size() < 4 else t  # noqa: E731
        split = lambda t: (None, None) if t is None else (t[:b], t[b:] if x2 is not None else None)  # noqa: E731
        return split(as_float(h)), split(as_float(a)), split(as_float(l))

    def _all_keys(self, keys: torch.Tensor) -> torch.Tensor:
        return keys if self.gather_no_grad is None else self.gather_no_grad(keys)[0]
