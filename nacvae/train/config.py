"""The pretraining configuration: dataset preset, then the method's recipe, then the user's options.

``resolve_config`` is the one place a run's settings are decided; ``PretrainConfig`` is the
result, recorded in the run's config.json. A method's own options (NAC's flip probability,
a queue length, a teacher...) are declared by the method (``nacvae.registry``) and kept in
``options``; every other field is shared by all methods.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from nacvae import presets, registry
from nacvae.checks import check_flags, check_int, check_real, check_seed
from nacvae.errors import CheckpointError, ConfigError

# Lengths that replace each other: a count in epochs from one layer drops the other layer's count in steps.
ALTERNATIVES = (("epochs", "steps"), ("warmup_epochs", "warmup_steps"))
SCHEDULES = ("cosine", "step")


@dataclass
class PretrainConfig:
    """Build it with ``resolve_config``: the fields the dataset preset decides default to None."""

    data: str = presets.DEFAULT_DATA
    data_dir: str | None = None
    download: bool = True              # fetch cifar10 / fashion-mnist when missing and a network is reachable
    subset: str | None = None          # None (whole train split) or "retrieval"
    objective: str = "nac"
    options: dict[str, Any] = field(default_factory=dict)  # the method's own options (nacvae.registry)
    recipe: str = "own"                # own: the method's recipe (head, start, views, optimiser...); shared: NAC's
    arch: str | None = None
    epochs: int | None = None
    steps: int | None = None           # total optimisation steps; used instead of epochs when set
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float = 1e-6
    warmup_epochs: int | None = None
    warmup_steps: int | None = None    # linear warm-up length in steps; used instead of warmup_epochs when set
    schedule: str = "cosine"           # after the warm-up: cosine decay to 0, or step (x0.1 at each of lr_drops)
    lr_drops: tuple[float, ...] = ()   # step schedule: the fractions of the run at which the lr is divided by 10
    code_dim: int = 128
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None            # bf16 autocast for the encoder; None = decided by nacvae/precision.py
    compile: bool = False              # torch.compile the backbone(s)
    sync_bn: bool = False              # SyncBatchNorm across processes under torchrun (CUDA only)
    image_size: int | None = None      # folders: side the images are resized to; streamed datasets: crop size [224]
    workers: int | None = None         # streamed datasets: DataLoader worker processes; None = the cores but one, at most 8
    skip_bad_images: bool = False      # streamed datasets: replace unreadable images and record them, instead of stopping
    log_every: int = 10
    checkpoint_every: int = 0          # steps; 0 = at the end of every epoch
    monitor_every: int | None = None   # steps between online k-NN / mAP checks (train/monitor.py); 0 = off

    @property
    def spec(self) -> registry.MethodSpec:
        return registry.spec(self.objective)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PretrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        if "options" not in d and d.get("objective", "nac") in registry.names():
            values["options"] = _options_of_flat_config(d)
        if "recipe" not in d:  # saved before methods had recipes of their own: every run had the shared one
            values["recipe"] = "shared"
        if isinstance(values.get("lr_drops"), list):  # JSON has no tuples
            values["lr_drops"] = tuple(values["lr_drops"])
        return cls(**values)


def _options_of_flat_config(d: dict[str, Any]) -> dict[str, Any]:
    """A method's options from a config.json written before they had a section of their own,
    when every method's option was a top-level key (None meaning the method's default)."""
    method = registry.spec(d.get("objective", "nac"))
    return {o.name: o.default if d.get(o.name) is None and not o.optional else d.get(o.name, o.default)
            for o in method.options}


def _layer(values: dict[str, Any], layer: dict[str, Any]) -> None:
    """``values`` updated by ``layer``, where a length in epochs replaces one in steps and vice versa."""
    for a, b in ALTERNATIVES:
        if a in layer:
            values.pop(b, None)
        if b in layer:
            values.pop(a, None)
    values.update(layer)


def resolve_config(data: str = presets.DEFAULT_DATA, objective: str | None = None, **given: Any) -> PretrainConfig:
    """The configuration of a run: ``data``'s preset, then the method's recipe (unless
    ``recipe="shared"``), then every value given (None means not given). A method's own
    options may be given by name."""
    objective = PretrainConfig.objective if objective is None else objective
    registry.spec(objective)
    given = {k: v for k, v in given.items() if v is not None}
    recipe = given.get("recipe", PretrainConfig.recipe)
    for a, b in ALTERNATIVES:
        if a in given and b in given:
            raise ConfigError(f"Give --{a.replace('_', '-')} or --{b.replace('_', '-')}, not both.")
    general = {f.name for f in dataclasses.fields(PretrainConfig)} - {"data", "objective", "options"}
    unknown = [k for k in given if k not in general and k not in registry.all_options()]
    if unknown:
        raise ConfigError(f"Unknown setting '{unknown[0]}'.")
    base = presets.pretrain_preset(data)
    options = registry.resolve_options(objective, base, {k: v for k, v in given.items() if k not in general})
    values = {k: v for k, v in base.items() if k in general}
    _layer(values, registry.recipe_of(objective, recipe))
    _layer(values, {k: v for k, v in given.items() if k in general})
    cfg = PretrainConfig(data=data, objective=objective, options=options, **values)
    validate_config(cfg)
    return cfg


def validate_config(cfg: PretrainConfig) -> None:
    """Every value of the configuration, whether from the command line, the API or a saved
    config.json: a meaningless one is a ConfigError naming its option."""
    # Imported here: the configuration is read by --help, before torch may start.
    from nacvae.models.backbones import ARCHITECTURES
    from nacvae.train.optim import OPTIMIZERS

    registry.spec(cfg.objective)
    registry.check_recipe(cfg.recipe)
    if not isinstance(cfg.options, dict):
        raise ConfigError(f"The options of --objective {cfg.objective} must be a mapping, got {cfg.options!r}.")
    registry.check_options(cfg.objective, cfg.options)
    if cfg.recipe == "own" and cfg.spec.start != "random" and not cfg.options.get("teacher"):
        raise ConfigError(f"--objective {cfg.objective} starts from a pretrained network under its own recipe "
                          f"(docs/method.md), so it needs --teacher; --recipe shared starts it from random weights.")
    if cfg.arch not in ARCHITECTURES:
        raise ConfigError(f"Unknown architecture '{cfg.arch}'; choose one of {', '.join(ARCHITECTURES)}.")
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"Unknown optimiser '{cfg.optimizer}'; choose one of {', '.join(OPTIMIZERS)}.")
    check_int("batch-size", cfg.batch_size, 2)  # contrastive objectives need pairs
    check_int("epochs", cfg.epochs, 1, optional=cfg.steps is not None)
    check_int("steps", cfg.steps, 1, optional=True)
    check_int("warmup-epochs", cfg.warmup_epochs, 0, optional=cfg.warmup_steps is not None)
    check_int("warmup-steps", cfg.warmup_steps, 0, optional=True)
    check_real("lr", cfg.lr, 0.0, low_open=True)
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"Unknown --schedule '{cfg.schedule}'; choose one of {', '.join(SCHEDULES)}.")
    if not isinstance(cfg.lr_drops, (tuple, list)) or not all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f < 1 for f in cfg.lr_drops):
        raise ConfigError(f"--lr-drops must be fractions of the run between 0 and 1, got {cfg.lr_drops!r}.")
    check_real("weight-decay", cfg.weight_decay, 0.0)
    check_int("code-dim", cfg.code_dim, 1)
    check_int("image-size", cfg.image_size, 1, optional=True)
    check_int("workers", cfg.workers, 0, optional=True)
    check_seed(cfg.seed)
    check_int("log-every", cfg.log_every, 1)
    check_int("checkpoint-every", cfg.checkpoint_every, 0)
    check_int("monitor-every", cfg.monitor_every, 0, optional=True)  # None: a run saved before it existed
    if cfg.subset not in (None, "retrieval"):
        raise ConfigError(f"Unknown --subset '{cfg.subset}'; the only subset is 'retrieval'.")
    check_flags(cfg, "download", "compile", "sync_bn", "skip_bad_images")


def load_saved_config(run, section: dict[str, Any], cls: type, validate: Callable[[Any], None]) -> Any:
    """``cls`` built from a run's saved config.json ``section`` and checked with ``validate``;
    a section that does not pass is reported as damaged."""
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
# --skip-bad-images may be turned on to continue a run that stopped at a bad image: without
# it the run could not have gone past one, so the steps taken are the same either way.
RESUME_FREE = {"threads", "workers", "skip_bad_images"}


def check_resume_options(run, saved: dict[str, Any], given: dict[str, Any]) -> None:
    """``--resume`` continues a run exactly as it was configured: an option given with it
    must equal the saved value. Changing the length (``--epochs``, ``--steps``) would change
    the learning-rate schedule of every step already taken, so it is refused too."""
    # A length in epochs is unused when the run was given one in steps, and vice versa.
    instead = {"epochs": "steps", "warmup_epochs": "warmup_steps"}
    saved = {**saved, **(saved.get("options") or {})}
    for name, value in given.items():
        if name not in saved and name in registry.all_options():
            raise ConfigError(f"--resume continues {run}, a run of --objective {saved.get('objective')}, which has no "
                              f"--{name.replace('_', '-')}; start a new run with another --out instead.")
        if name in saved and name not in RESUME_FREE and saved[name] != value:
            shown = instead.get(name) if saved.get(instead.get(name, "")) is not None else name
            flag, saved_flag = ("--" + n.replace("_", "-") for n in (name, shown))
            raise ConfigError(
                f"--resume continues {run} with the settings it was started with ({saved_flag} {saved[shown]!r}), "
                f"so {flag} {value!r} cannot be given with it; start a new run with another --out instead.")


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
