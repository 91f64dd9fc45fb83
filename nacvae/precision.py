"""Whether the encoder runs under bf16 autocast on the training device.

bf16 autocast is the default only where the GPU computes in bf16 natively (compute
capability 8.0 and newer: Ampere, Hopper, ...). On older GPUs PyTorch emulates bf16,
which is slower than float32, so they train in float32 unless ``--amp`` asks for bf16
anyway. float16 with loss scaling is not offered: its range needs a GradScaler, and the
objectives and LARS would then have to see unscaled gradients for no gain over float32
on the GPUs concerned.
"""

from __future__ import annotations

import torch

__all__ = ["use_bf16", "has_native_bf16", "resolve_amp"]


def use_bf16(device_type: str, requested: bool | None, native_bf16: bool) -> bool:
    """The decision itself: ``--amp`` / ``--no-amp`` win; by default (``requested`` None)
    bf16 on a CUDA device with native bf16, float32 everywhere else."""
    if requested is not None:
        return bool(requested)
    return device_type == "cuda" and native_bf16


def has_native_bf16(device: torch.device) -> bool:
    """True for a CUDA device that computes in bf16 without emulation."""
    if device.type != "cuda":
        return False
    with torch.cuda.device(device):
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # PyTorch before 2.3 cannot be asked; native bf16 starts with Ampere
            return torch.cuda.get_device_capability(device)[0] >= 8


def resolve_amp(device: torch.device, requested: bool | None) -> bool:
    """bf16 autocast on ``device``, given the user's ``--amp/--no-amp`` (None: not given)."""
    if requested is not None or device.type != "cuda":
        return use_bf16(device.type, requested, False)
    return use_bf16(device.type, None, has_native_bf16(device))
