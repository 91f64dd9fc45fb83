"""Which torch device a command runs on."""

from __future__ import annotations

import torch

from nacvae.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA on a machine without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"Unknown device '{name}'; use auto, cpu, cuda or cuda:N.") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name} was asked for, but this machine has no usable CUDA GPU.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name} was asked for, but this machine has {torch.cuda.device_count()} GPU(s).")
    elif device.type != "cpu":
        raise ConfigError(f"Unsupported device '{name}'; use auto, cpu, cuda or cuda:N.")
    return device
