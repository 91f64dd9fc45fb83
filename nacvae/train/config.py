"""Pretraining configuration and the per-dataset defaults."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

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
    # 224-px datasets, streamed (experiments/README.md gives the paper's configurations).
    "imagenet": dict(arch="resnet50", batch_size=256, optimizer="lars", lr=0.3, epochs=200, warmup_epochs=10,
                     queue_size=65_536),
    "flickr25k": dict(arch="vgg16_bn", batch_size=1000, optimizer="lars", lr=3.0, steps=10_000, warmup_steps=500,
                      queue_size=4_096),
    "webdataset": dict(arch="resnet50", batch_size=256, optimizer="lars", lr=0.3, epochs=200, warmup_epochs=10,
                       queue_size=65_536),
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
    amp: bool | None = None            # bf16 autocast for the encoder; None = on for GPUs with native bf16 (train/precision.py)
    compile: bool = False              # torch.compile the backbone(s)
    sync_bn: bool = False              # SyncBatchNorm across processes under torchrun (CUDA only)
    image_size: int | None = None      # folders: side the images are resized to; streamed datasets: crop size [224]
    workers: int | None = None         # streamed datasets: DataLoader worker processes; None = the cores but one, at most 8
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
    if name.startswith("folder:"):
        return "folder"
    if name.startswith("webdataset:"):
        return "webdataset"
    return name


def resolve_config(data: str = "digits", **given: Any) -> PretrainConfig:
    """A configuration from the dataset's defaults, overridden by every value given (not None)."""
    family = dataset_family(data)
    if family not in DATASET_DEFAULTS:
        known = ", ".join(k for k in DATASET_DEFAULTS if k not in ("folder", "webdataset")) + \
            ", folder:PATH, webdataset:URL_PATTERN"
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


def check_int(name: str, value: Any, least: int = 1, optional: bool = False) -> None:
    """``--name`` must be an integer of at least ``least`` (or None when ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"--{name} must be a whole number, got {value!r}.")
    if value < least:
        need = "must not be negative" if least == 0 else f"must be at least {least}"
        raise ConfigError(f"--{name} {need}, got {value!r}.")


def check_real(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False,
               high_open: bool = True, optional: bool = False) -> None:
    """``--name`` must be a finite number in the interval from ``low`` to ``high``."""
    if optional and value is None:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    inside = number and math.isfinite(value) and (value > low if low_open else value >= low) and (
        value < high if high_open else value <= high)
    if not inside:
        if high == math.inf:
            want = f"a finite number {'above' if low_open else 'of at least'} {low:g}"
        else:
            want = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"--{name} must be {want}, got {value!r}.")


# The largest seed torch.manual_seed takes.
MAX_SEED = 2**63 - 1


def validate_config(cfg: PretrainConfig) -> None:
    """Every value of the configuration, whether from the command line, the API or a saved
    config.json: a meaningless one is a ConfigError naming its option."""
    from nacvae.models.backbones import ARCHITECTURES
    from nacvae.train.methods import OBJECTIVES
    from nacvae.train.optim import OPTIMIZERS

    if cfg.objective not in OBJECTIVES:
        raise ConfigError(f"Unknown objective '{cfg.objective}'; choose one of {', '.join(OBJECTIVES)}.")
    if cfg.arch not in ARCHITECTURES:
        raise ConfigError(f"Unknown architecture '{cfg.arch}'; choose one of {', '.join(ARCHITECTURES)}.")
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"Unknown optimiser '{cfg.optimizer}'; choose one of {', '.join(OPTIMIZERS)}.")
    if not isinstance(cfg.flip_prob, (int, float)) or isinstance(cfg.flip_prob, bool) or not 0.0 < cfg.flip_prob < 0.5:
        raise ConfigError(f"--flip-prob must lie strictly between 0 and 0.5, got {cfg.flip_prob}.")
    check_int("batch-size", cfg.batch_size, 2)  # contrastive objectives need pairs
    check_int("epochs", cfg.epochs, 1)
    check_int("steps", cfg.steps, 1, optional=True)
    check_int("warmup-epochs", cfg.warmup_epochs, 0)
    check_int("warmup-steps", cfg.warmup_steps, 0, optional=True)
    if not (isinstance(cfg.lr, (int, float)) and not isinstance(cfg.lr, bool) and math.isfinite(cfg.lr)
            and cfg.lr > 0):
        raise ConfigError(f"--lr must be a finite positive number, got {cfg.lr}.")
    check_real("weight-decay", cfg.weight_decay, 0.0)
    check_int("code-dim", cfg.code_dim, 1)
    # 0 would divide the similarities by zero (and was once replaced by the default).
    check_real("temperature", cfg.temperature, 0.0, low_open=True, optional=True)
    check_int("queue-size", cfg.queue_size, 1)
    check_real("l2-weight", cfg.l2_weight, 0.0)
    check_real("ema", cfg.ema, 0.0, 1.0)
    check_int("image-size", cfg.image_size, 1, optional=True)
    check_int("workers", cfg.workers, 0, optional=True)
    check_int("seed", cfg.seed, 0)
    if cfg.seed > MAX_SEED:
        raise ConfigError(f"--seed must be at most {MAX_SEED}, got {cfg.seed}.")
    check_int("log-every", cfg.log_every, 1)
    check_int("checkpoint-every", cfg.checkpoint_every, 0)
    _validate_baseline_options(cfg)
    if cfg.subset not in (None, "retrieval"):
        raise ConfigError(f"Unknown --subset '{cfg.subset}'; the only subset is 'retrieval'.")
    check_flags(cfg, "momentum", "download", "compile", "sync_bn")


def check_flags(cfg: Any, *names: str) -> None:
    """Each of ``cfg``'s fields ``names`` must be a bool (an on/off option)."""
    for name in names:
        if not isinstance(getattr(cfg, name), bool):
            raise ConfigError(f"--{name.replace('_', '-')} must be on or off, got {getattr(cfg, name)!r}.")


def load_saved_config(run, section: dict[str, Any], cls: type, validate: Callable[[Any], None]) -> Any:
    """``cls`` built from a run's saved config.json ``section`` and checked with ``validate``;
    a section that does not pass is reported as damaged."""
    from nacvae.errors import CheckpointError

    try:
        cfg = cls.from_dict(section)
        validate(cfg)
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"The configuration saved in {run} is damaged: {str(exc).rstrip('.')}.") from None
    return cfg


def saved_config(run, section: dict[str, Any]) -> PretrainConfig:
    """The configuration a run was started with (its config.json's ``pretrain`` section)."""
    return load_saved_config(run, section, PretrainConfig, validate_config)


# Settings of how a process runs, not of what it trains: free to differ on --resume.
RESUME_FREE = {"threads", "workers"}


def check_resume_options(run, saved: dict[str, Any], given: dict[str, Any]) -> None:
    """``--resume`` continues a run exactly as it was configured: an option given with it
    must equal the saved value. Changing the length (``--epochs``, ``--steps``) would change
    the learning-rate schedule of every step already taken, so it is refused too."""
    # A length in epochs is unused when the run was given one in steps, and vice versa.
    instead = {"epochs": "steps", "warmup_epochs": "warmup_steps"}
    for name, value in given.items():
        if name in saved and name not in RESUME_FREE and saved[name] != value:
            shown = instead.get(name) if saved.get(instead.get(name, "")) is not None else name
            flag, saved_flag = ("--" + n.replace("_", "-") for n in (name, shown))
            raise ConfigError(
                f"--resume continues {run} with the settings it was started with ({saved_flag} {saved[shown]!r}), "
                f"so {flag} {value!r} cannot be given with it; start a new run with another --out instead.")


def _validate_baseline_options(cfg: PretrainConfig) -> None:
    """The options of InsDis, SSDH and DistillHash (docs/method.md, "Baselines")."""
    from nacvae.train.methods import OPTIONAL_TEACHER_OBJECTIVES, TEACHER_OBJECTIVES

    if cfg.objective in TEACHER_OBJECTIVES and not cfg.teacher:
        raise ConfigError(f"--objective {cfg.objective} needs --teacher, a pretraining run or backbone state dict "
                          f"whose features give the pair similarities.")
    takers = TEACHER_OBJECTIVES + OPTIONAL_TEACHER_OBJECTIVES
    if cfg.teacher and cfg.objective not in takers:
        raise ConfigError(f"--teacher is used only by --objective {', '.join(takers[:-1])} and {takers[-1]}, "
                          f"not {cfg.objective}.")
    if cfg.negatives is not None and (isinstance(cfg.negatives, bool) or not isinstance(cfg.negatives, int)
                                      or cfg.negatives < 0):
        raise ConfigError(f"--negatives must be a non-negative integer (0 = exact softmax), got {cfg.negatives!r}.")
    if not (isinstance(cfg.bank_momentum, (int, float)) and 0.0 <= cfg.bank_momentum < 1.0):
        raise ConfigError(f"--bank-momentum must lie in [0, 1), got {cfg.bank_momentum!r}.")


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
