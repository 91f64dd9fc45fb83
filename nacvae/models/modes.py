"""Evaluating a module in the middle of training without disturbing its modes."""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode for the block, then every submodule back in its own mode.

    ``module.train(was_training)`` would not do: it sets every submodule alike, and a
    method may keep a part in eval mode while the rest trains (DeepBit's frozen backbone,
    whose batch-norm statistics must stay the teacher's)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training
