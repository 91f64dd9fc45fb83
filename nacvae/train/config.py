"""Pretraining configuration and the per-dataset defaults."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from nacvae.errors import ConfigError

# Paper's CIFAR-10 settings (method.md §6); CPU-sized ones for the small datasets. Warm-ups
# are in steps: NAC needs about 500 at a LARS-sized lr whatever the dataset (a few dozen
# can push it into the trivial solution z = 0 at large p; see docs/results.md).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "cifar10": dict(arch="resnet50", batch_size=1000, optimizer="lars", lr=3.0, epochs=1000, warmup_steps=500,
                    queue_size=50_000),
    "fashion-mnist": dict(arch="resnet18", batch_size=512, optimizer="lars", lr=1.5, epochs=200, warmup_steps=500,
                          queue_size=16_384),
    "digits": dict(arch="smallconv", batch_size=128, optimizer="lars", lr=3.0, steps=1500,
                   warmup_steps=500, queue_size=1_024),
    "folder": dict(arch="resnet18", batch_size=256, optimizer="lars", lr=0.75, epochs=200, warmup_steps=500,
                   queue_size=16_384),
}


@dataclass
class PretrainConfig:
    data: str = "digits"
    data_dir: str | None = None
    download: bool = True              # fetch cifar10 / fashion-mnist when missing and a network is reachable
    subset: str | None = None          # None (whole train split) or "retrieval"
    objective: str = "nac"
    momentum: bool = False             # NAC's momentum-queue variant
    arch: str = "smallconv"
    epochs: int = 30
    steps: int | None = None           # total optimisation steps; overrides epochs when set
    batch_size: int = 128
    optimizer: str = "lars"
    lr: float = 3.0
    weight_decay: float = 1e-6
    warmup_epochs: int = 2
    warmup_steps: int | None = None    # linear warm-up length in steps; overrides warmup_epochs when set
    flip_prob: float = 0.1
    code_dim: int = 128
    temperature: float | None = None   # SimCLR 0.5, MoCo 0.2 when None
    queue_size: int = 1_024
    ema: float = 0.99
    l2_weight: float = 0.1
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None            # bf16 autocast for the encoder; None = on for CUDA, off on CPU
    compile: bool = False              # torch.compile the backbone(s)
    sync_bn: bool = False              # SyncBatchNorm across processes under torchrun (CUDA only)
    image_size: int | None = None      # folders only: side the images are resized to
    log_every: int = 10
    checkpoint_every: int = 0          # steps; 0 = at the end of every epoch
    teacher: str | None = None         # ssdh / distillhash: a pretraining run, checkpoint or backbone state dict
    negatives: int | None = None       # insdis: NCE noise entries per step; 0 = exact softmax; None = exact up to 50,000 images, else 4096
    bank_momentum: float = 0.5         # insdis: memory-bank momentum
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PretrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def dataset_family(name: str) -> str:
    return "folder" if name.startswith("folder:") else name


def resolve_config(data: str = "digits", **given: Any) -> PretrainConfig:
    """A configuration from the dataset's defaults, overridden by every value given (not None)."""
    family = dataset_family(data)
    if family not in DATASET_DEFAULTS:
        known = ", ".join([*DATASET_DEFAULTS][:-1]) + ", folder:PATH"
        raise ConfigError(f"Unknown dataset '{data}'; choose one of {known}.")
    given = {k: v for k, v in given.items() if v is not None}
    for a, b in (("epochs", "steps"), ("warmup_epochs", "warmup_steps")):
        if a in given and b in given:
            raise ConfigError(f"Give --{a.replace('_', '-')} or --{b.replace('_', '-')}, not both.")
    values = dict(DATASET_DEFAULTS[family])
    # An epoch count given by the user replaces the default's count in steps, and vice versa.
    for a, b in (("epochs", "steps"), ("warmup_epochs", "warmup_steps"), ("steps", "epochs"),
                 ("warmup_steps", "warmup_epochs")):
        if a in given:
            values.pop(b, None)
    values.update(given)
    cfg = PretrainConfig(data=data, **values)
    validate_config(cfg)
    return cfg


def validate_config(cfg: PretrainConfig) -> None:
    from nacvae.models.backbones import ARCHITECTURES
    from nacvae.train.methods import OBJECTIVES
    from nacvae.train.optim import OPTIMIZERS

    if cfg.objective not in OBJECTIVES:
        raise ConfigError(f"Unknown objective '{cfg.objective}'; choose one of {', '.join(OBJECTIVES)}.")
    if cfg.arch not in ARCHITECTURES:
        raise ConfigError(f"Unknown architecture '{cfg.arch}'; choose one of {', '.join(ARCHITECTURES)}.")
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"Unknown optimiser '{cfg.optimizer}'; choose one of {', '.join(OPTIMIZERS)}.")
    if not 0.0 < cfg.flip_prob < 0.5:
        raise ConfigError(f"--flip-prob must lie strictly between 0 and 0.5, got {cfg.flip_prob}.")
    if cfg.batch_size < 2:
        raise ConfigError(f"--batch-size must be at least 2 (contrastive objectives need pairs), got {cfg.batch_size}.")
    if cfg.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {cfg.epochs}.")
    if cfg.steps is not None and cfg.steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {cfg.steps}.")
    if cfg.warmup_epochs < 0:
        raise ConfigError(f"--warmup-epochs must not be negative, got {cfg.warmup_epochs}.")
    if cfg.warmup_steps is not None and cfg.warmup_steps < 0:
        raise ConfigError(f"--warmup-steps must not be negative, got {cfg.warmup_steps}.")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ConfigError(f"--lr must be a finite positive number, got {cfg.lr}.")
    if cfg.code_dim < 1:
        raise ConfigError(f"--code-dim must be at least 1, got {cfg.code_dim}.")
    if cfg.queue_size < 1:
        raise ConfigError(f"--queue-size must be at least 1, got {cfg.queue_size}.")
    if cfg.l2_weight < 0:
        raise ConfigError(f"--l2-weight must not be negative, got {cfg.l2_weight}.")
    if not 0.0 <= cfg.ema < 1.0:
        raise ConfigError(f"--ema must lie in [0, 1), got {cfg.ema}.")
    _validate_baseline_options(cfg)
    if cfg.subset not in (None, "retrieval"):
        raise ConfigError(f"Unknown --subset '{cfg.subset}'; the only subset is 'retrieval'.")


def _validate_baseline_options(cfg: PretrainConfig) -> None:
    """The options of InsDis, SSDH and DistillHash (docs/method.md §7)."""
    from nacvae.train.methods import TEACHER_OBJECTIVES

    if cfg.objective in TEACHER_OBJECTIVES and not cfg.teacher:
        raise ConfigError(f"--objective {cfg.objective} needs --teacher, a pretraining run or backbone state dict "
                          f"whose features give the pair similarities.")
    if cfg.teacher and cfg.objective not in TEACHER_OBJECTIVES:
        raise ConfigError(f"--teacher is used only by --objective {' and '.join(TEACHER_OBJECTIVES)}, "
                          f"not {cfg.objective}.")
    if cfg.negatives is not None and (isinstance(cfg.negatives, bool) or not isinstance(cfg.negatives, int)
                                      or cfg.negatives < 0):
        raise ConfigError(f"--negatives must be a non-negative integer (0 = exact softmax), got {cfg.negatives!r}.")
    if not (isinstance(cfg.bank_momentum, (int, float)) and 0.0 <= cfg.bank_momentum < 1.0):
        raise ConfigError(f"--bank-momentum must lie in [0, 1), got {cfg.bank_momentum!r}.")
    if cfg.objective == "insdis" and cfg.temperature is not None and not (
            math.isfinite(cfg.temperature) and cfg.temperature > 0):
        raise ConfigError(f"--temperature must be a finite positive number, got {cfg.temperature}.")


def schedule_steps(cfg: PretrainConfig, steps_per_epoch: int) -> tuple[int, int]:
    """(total steps, warm-up steps) of a run whose epochs have ``steps_per_epoch`` steps."""
    total = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else cfg.warmup_epochs * steps_per_epoch
    return total, warmup


def check_world_size(batch_size: int, world_size: int) -> int:
    """Images per process: --batch-size is the global batch and must split evenly."""
    if batch_size % world_size:
        raise ConfigError(
            f"--batch-size {batch_size} is the batch over all {world_size} processes and must be a multiple of {world_size}."
        )
    return batch_size // world_size


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
