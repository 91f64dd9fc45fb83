"""The VAE stage's configuration and where its encoder comes from.

``VAEConfig`` holds every setting of ``nacvae vae``; ``resolve_encoder_init`` turns it into
the backbone to start from: a seeded random one, the newest complete pretraining run of
the chosen objective under the runs root, or an explicit checkpoint or run folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacvae import presets, registry
from nacvae.checks import check_flags, check_int, check_real, check_seed
from nacvae.errors import CheckpointError, ConfigError
from nacvae.runs import CHECKPOINT, default_runs_root, find_latest_run, iter_runs, run_checkpoint
from nacvae.seeds import RANDOM_BACKBONE_STREAM, step_seed

INITS = ("random",) + registry.names()
ELBOS = ("meanfield", "trace")  # TraceMeanField_ELBO (analytic KL), Trace_ELBO
BINARIZE = ("threshold", "stochastic")



@dataclass
class VAEConfig:
    data: str = presets.DEFAULT_DATA
    data_dir: str | None = None
    download: bool = True
    image_size: int | None = None      # folders: side images are resized to [the encoder's, else 32]
    init: str = "random"               # random, or a method's name: its newest pretraining run
    encoder: str | None = None         # a pretraining checkpoint or run folder; overrides init
    runs_root: str | None = None       # where --init looks for pretraining runs [$NACVAE_RUNS or ./runs]
    arch: str | None = None            # [the encoder's; the dataset's default for random]
    likelihood: str = "logistic"       # logistic | bernoulli
    binarize: str = "threshold"        # bernoulli data: threshold at 128, or stochastic per step
    latent_dim: int = 32
    decoder_width: int = 64
    freeze_encoder: bool = False
    elbo: str = "meanfield"            # meanfield: analytic KL (TraceMeanField_ELBO); trace: Trace_ELBO
    epochs: int = 100
    steps: int | None = None           # train this many steps instead of --epochs (may end mid-epoch)
    batch_size: int = 128
    lr: float = 1e-3
    kl_warmup_epochs: int = 0          # linear annealing of the KL weight from 0 to 1; 0 = weight 1 throughout
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None            # bf16 autocast for the backbone and decoder; None = timed (nacvae/precision.py)
    log_every: int = 10                # steps
    checkpoint_every: int = 0          # steps; 0 = at epoch ends, as often as costs under 2% of the run (train/vae.py)
    test_every: int = 1                # epochs between test-set ELBO records; 0 = never
    image_every: int = 1               # epochs between TensorBoard pictures; 0 = never
    eval_samples: int = 0              # > 0: importance-weighted log-likelihood on the test split at the end
    curve_points: int = 10             # convergence-curve points at fixed fractions of training; 0 = none
    curve_samples: int = 10            # importance samples of each point's log p(x); 0 = ELBO only
    curve_images: int = 1000           # the first N test images, evaluated at every point

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VAEConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def resolve_vae_config(data: str = presets.DEFAULT_DATA, **given: Any) -> VAEConfig:
    """A configuration from the dataset's VAE preset, overridden by every value given (not None)."""
    values = presets.preset(presets.VAE, data)
    values.update({k: v for k, v in given.items() if v is not None})
    cfg = VAEConfig(data=data, **values)
    validate_vae_config(cfg)
    return cfg


def validate_vae_config(cfg: VAEConfig) -> None:
    if cfg.init not in INITS:
        raise ConfigError(f"Unknown --init '{cfg.init}'; choose one of {', '.join(INITS)}.")
    # Imported here: the configuration is read by --help, before torch may start.
    from nacvae.models.backbones import ARCHITECTURES
    from nacvae.models.vae import LIKELIHOODS

    if cfg.arch is not None and cfg.arch not in ARCHITECTURES:
        raise ConfigError(f"Unknown architecture '{cfg.arch}'; choose one of {', '.join(ARCHITECTURES)}.")
    if cfg.likelihood not in LIKELIHOODS:
        raise ConfigError(f"Unknown --likelihood '{cfg.likelihood}'; choose one of {', '.join(LIKELIHOODS)}.")
    if cfg.binarize not in BINARIZE:
        raise ConfigError(f"Unknown --binarize '{cfg.binarize}'; choose one of {', '.join(BINARIZE)}.")
    if cfg.elbo not in ELBOS:
        raise ConfigError(f"Unknown --elbo '{cfg.elbo}'; choose one of {', '.join(ELBOS)}.")
    check_int("latent-dim", cfg.latent_dim)
    check_int("decoder-width", cfg.decoder_width)
    check_int("epochs", cfg.epochs)
    check_int("steps", cfg.steps, optional=True)
    # batch norm in the backbone needs more than one value per channel
    check_int("batch-size", cfg.batch_size, 2)
    check_real("lr", cfg.lr, 0.0, low_open=True)
    check_int("kl-warmup-epochs", cfg.kl_warmup_epochs, 0)
    check_int("eval-samples", cfg.eval_samples, 0)
    check_int("curve-points", cfg.curve_points, 0)
    check_int("curve-samples", cfg.curve_samples, 0)
    check_int("curve-images", cfg.curve_images)
    check_int("log-every", cfg.log_every)
    check_int("checkpoint-every", cfg.checkpoint_every, 0)
    check_int("test-every", cfg.test_every, 0)
    check_int("image-every", cfg.image_every, 0)
    check_int("image-size", cfg.image_size, optional=True)
    check_seed(cfg.seed)
    check_flags(cfg, "download", "freeze_encoder")


def saved_vae_config(run, section: dict[str, Any]) -> VAEConfig:
    """The configuration a VAE run was started with (its config.json's ``vae`` section)."""
    from nacvae.train.config import load_saved_config

    return load_saved_config(run, section, VAEConfig, validate_vae_config)


# ------------------------------------------------------------------------ the encoder


def _runs_root(cfg: VAEConfig) -> Path:
    return Path(cfg.runs_root) if cfg.runs_root is not None else default_runs_root()


def _describe_pretraining_runs(root: Path, limit: int = 8) -> str:
    from collections import Counter

    counts = Counter(
        (f"{c.get('objective')}/{c.get('dataset')}/{c.get('arch')}"
         + ("" if c.get("status") == "complete" else f" ({c.get('status')})"))
        for _, c in iter_runs(root) if c.get("kind") == "pretrain"
    )
    if not counts:
        return "none"
    found = [label if n == 1 else f"{label} x{n}" for label, n in sorted(counts.items())]
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return ", ".join(found[:limit]) + more


def _find_encoder_checkpoint(cfg: VAEConfig) -> tuple[Path, Path | None]:
    """(checkpoint, run folder or None) of the encoder to transfer; not for ``init="random"``."""
    if cfg.encoder is not None:
        path = Path(cfg.encoder)
        if path.is_dir():
            return run_checkpoint(path, "pretrain", "pretraining", label=f"--encoder {path}"), path
        if not path.is_file():
            raise CheckpointError(f"--encoder {path} is neither a checkpoint file nor a run folder.")
        return path, None
    root = _runs_root(cfg)
    match = {"objective": cfg.init, "dataset": cfg.data}
    if cfg.arch is not None:
        match["arch"] = cfg.arch
    run = find_latest_run(root, "pretrain", **match)
    if run is None:
        what = f"{cfg.init} pretraining run for {cfg.data}" + (f" with arch {cfg.arch}" if cfg.arch else "")
        raise ConfigError(
            f"No complete {what} under {root}; the pretraining runs there are: {_describe_pretraining_runs(root)}."
        )
    return run / CHECKPOINT, run


def resolve_encoder_init(cfg: VAEConfig, image_shape: tuple[int, int, int] | None = None):
    """The backbone to start from: ``(backbone, feature_dim, source)``.

    ``source`` describes it (init, objective, checkpoint, run, step, complete, pretraining
    dataset, arch, image_shape). With ``image_shape`` None the dataset's shape is not
    checked (the caller does it once the data are loaded).
    """
    from nacvae.transfer import load_encoder, random_encoder
    if cfg.encoder is None and cfg.init == "random":
        if image_shape is None:
            raise ConfigError("A random encoder needs the image shape.")
        arch = presets.default_arch(cfg.data) if cfg.arch is None else cfg.arch
        seed = _random_backbone_seed(cfg.seed)
        encoder, meta = random_encoder(arch, tuple(image_shape), seed=seed)
        source = {"init": "random", "objective": "random", "arch": arch, "checkpoint": None, "run": None,
                  "step": None, "complete": None, "seed": seed, "image_shape": list(image_shape),
                  "pretrain_dataset": None}
        return encoder.backbone, encoder.feature_dim, source

    path, run = _find_encoder_checkpoint(cfg)
    encoder, meta = load_encoder(path)
    if cfg.arch is not None and meta["arch"] != cfg.arch:
        raise ConfigError(f"The encoder {path} is a {meta['arch']} backbone, but --arch {cfg.arch} was asked for.")
    if image_shape is not None:
        check_encoder_shape(path, meta["image_shape"], image_shape, cfg.data)
    source = {"init": meta["objective"], "objective": meta["objective"], "arch": meta["arch"],
              "checkpoint": str(path), "run": None if run is None else str(run), "step": meta["step"],
              "complete": meta["complete"], "image_shape": list(meta["image_shape"]),
              "pretrain_dataset": meta.get("dataset")}
    return encoder.backbone, encoder.feature_dim, source


def check_encoder_shape(path, encoder_shape, image_shape, data: str) -> None:
    if list(encoder_shape) != list(image_shape):
        have = "x".join(map(str, encoder_shape))
        want = "x".join(map(str, image_shape))
        raise ConfigError(
            f"The encoder {path} was pretrained on {have} images (channels x height x width), "
            f"but the {data} images are {want}."
        )


def _random_backbone_seed(seed: int) -> int:
    # The VAE's own heads are initialised from `seed`; the random backbone gets its own
    # stream so that those heads are the same for every init.
    return step_seed(seed, 0, stream=RANDOM_BACKBONE_STREAM) % 2**32


def describe_encoder_choice(cfg: VAEConfig) -> str | None:
    """Which pretraining run ``--init nac|simclr|moco`` picks, as one line; None when the
    encoder is random or given by ``--encoder``."""
    if cfg.encoder is not None or cfg.init == "random":
        return None
    path, run = _find_encoder_checkpoint(cfg)
    return (f"Encoder: the newest complete {cfg.init} pretraining run for {cfg.data} under {_runs_root(cfg)}: "
            f"{run if run is not None else path}")
