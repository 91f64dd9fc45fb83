"""The studies' scales and encoder names: the method-name constants both studies share, the
encoder study's ``Preset`` table and its choice of encoders (``default_methods``,
``resolve_methods``), and the VAE study's ``VAEStudyPreset`` table with its backbone modes and
the options that vary its VAEs. ``lookup_preset`` finds a preset by name in either table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from nacvae import registry
from nacvae.errors import ConfigError

OBJECTIVES = registry.group("main")  # NAC, SimCLR, MoCo-v2: evaluated, and a VAE from each
INITS = ("random",) + OBJECTIVES
RETRIEVAL_OF = OBJECTIVES[0]  # NAC: the method the study trains again at the preset's retrieval p
RETRIEVAL_NAC = f"{RETRIEVAL_OF}-retrieval"  # evaluated, no VAE
# The paper's other baselines; evaluated, no VAE. SSDH and DistillHash take their pair
# similarities from the same seed's SimCLR encoder, which is trained for them if not asked for.
BASELINES = registry.group("baseline")
TEACHER_INIT = "simclr"
# Trained with the same seed's TEACHER_INIT encoder as --teacher: its features label SSDH's
# and DistillHash's pairs, and DeepBit's hash layer trains on its frozen backbone.
TAUGHT = registry.teacher_methods()
ALL_INITS = INITS + (RETRIEVAL_NAC,) + BASELINES


@dataclass
class Preset:
    """A study's scale. ``pretrain`` / ``vae`` are passed to the training configurations."""

    data: str
    arch: str
    description: str
    pretrain: dict[str, Any] = field(default_factory=dict)
    retrieval_flip_prob: float | None = None
    linear: dict[str, Any] = field(default_factory=dict)
    vae: dict[str, Any] = field(default_factory=dict)
    loglik_samples: int = 1000
    loglik_images: int | None = None
    methods: tuple[str, ...] | None = None  # encoders of the study; None = random, nac, simclr, moco (+ nac-retrieval)


PRESETS: dict[str, Preset] = {
    # The README's first command: about 3 minutes on 2 quiet CPU cores. Every encoder
    # trains 1,500 steps (about 136 epochs), 500 of them warm-up: NAC's code magnitude
    # has flattened by the end (docs/results.md). The retrieval encoder uses the p that
    # gave the best mAP in the noise sweep on digits (p = 0.2 of 0.05 ... 0.45).
    "digits": Preset(
        data="digits", arch="smallconv",
        description="scikit-learn digits (1,438 train / 359 test, 8x8), small conv net, 1,500 steps per encoder",
        pretrain=dict(steps=1500, warmup_steps=500, batch_size=128),
        retrieval_flip_prob=0.2,
        linear=dict(protocol="fast", epochs=100, batch_size=256),
        vae=dict(epochs=30, batch_size=128, latent_dim=16),
        loglik_samples=500,
    ),
    # The CPU-scale study on real data: encoders pretrained on the retrieval protocol's
    # 5,000-image subset (500 per class, as the paper's hashing runs) and evaluated on the
    # full splits; VAEs on all 60,000 training images. About an hour of CPU time a seed (one
    # core; 36 minutes on two quiet ones).
    "fashion-mnist-cpu": Preset(
        data="fashion-mnist", arch="smallconv",
        description="Fashion-MNIST (28x28), small conv net pretrained 1,400 steps on 5,000 images, VAEs 1 epoch",
        pretrain=dict(subset="retrieval", steps=1400, warmup_steps=500, batch_size=128, optimizer="lars", lr=3.0),
        retrieval_flip_prob=0.2,
        linear=dict(protocol="fast", epochs=30, batch_size=1000),
        vae=dict(epochs=1, batch_size=256, latent_dim=32),
        loglik_samples=100, loglik_images=500,
    ),
    # The paper's CIFAR-10 protocols (GPU; see experiments/): classification at p = 0.1,
    # 50,000 steps; the retrieval encoder at p = 0.4 on the same budget.
    "cifar10-paper": Preset(
        data="cifar10", arch="resnet50",
        description="CIFAR-10, ResNet-50, LARS lr 3.0, batch 1000, 1000 epochs, p = 0.1 (the paper's)",
        pretrain=dict(epochs=1000, batch_size=1000, optimizer="lars", lr=3.0, warmup_steps=500, flip_prob=0.1),
        retrieval_flip_prob=0.4,
        linear=dict(protocol="paper", epochs=100, batch_size=1000),
        vae=dict(epochs=200, batch_size=256, latent_dim=64),
        loglik_samples=5000,
    ),
}


# Fashion-MNIST at the CPU scale with the paper's other baselines beside NAC, SimCLR and
# MoCo-v2, every encoder pretrained for the same 1,400 steps (docs/results.md).
PRESETS["fashion-mnist-cpu-baselines"] = replace(
    PRESETS["fashion-mnist-cpu"],
    description="Fashion-MNIST (28x28), small conv net pretrained 1,400 steps on 5,000 images, with InsDis, DeepBit, "
                "SSDH and DistillHash (teacher: the seed's SimCLR encoder), VAEs 1 epoch",
    methods=INITS + (RETRIEVAL_NAC,) + BASELINES,
)


def default_methods(preset: Preset) -> tuple[str, ...]:
    """The encoders a preset trains and evaluates unless --methods says otherwise."""
    if preset.methods is not None:
        return preset.methods
    return INITS + ((RETRIEVAL_NAC,) if preset.retrieval_flip_prob is not None else ())


def resolve_methods(preset: Preset, methods: list[str] | tuple[str, ...] | None) -> list[str]:
    """The study's encoders in table order, with the teacher SSDH and DistillHash need."""
    chosen = list(default_methods(preset) if methods is None else methods)
    unknown = [m for m in chosen if m not in ALL_INITS]
    if unknown or not chosen:
        raise ConfigError(f"Unknown method '{unknown[0] if unknown else ''}' for --methods; choose from "
                          f"{', '.join(ALL_INITS)}.")
    if RETRIEVAL_NAC in chosen and preset.retrieval_flip_prob is None:
        raise ConfigError(f"This preset has no retrieval flip probability, so it cannot train {RETRIEVAL_NAC}.")
    if any(m in TAUGHT for m in chosen) and TEACHER_INIT not in chosen:
        chosen.append(TEACHER_INIT)
    return [i for i in ALL_INITS if i in chosen]


def objective_of(init: str) -> str:
    """The pretraining method behind a study's encoder name (nac-retrieval is NAC)."""
    return RETRIEVAL_OF if init == RETRIEVAL_NAC else init


def method_budget(objective: str, settings: dict[str, Any], recipe: str = "own") -> dict[str, Any]:
    """The study's pretraining ``settings`` as they apply to ``objective`` under ``recipe``.

    Under its own recipe a method keeps the training settings its recipe sets (optimiser, lr,
    batch size, warm-up...) and the study's others, and the budget stays equal in epochs: a
    method with its own batch size trains steps x batch / its batch steps, so that it sees as
    many images as every other method."""
    own = registry.recipe_of(objective, recipe)
    if not own:
        return dict(settings)
    dropped = set(own)
    if {"warmup_steps", "warmup_epochs"} & dropped:
        dropped |= {"warmup_steps", "warmup_epochs"}
    out = {k: v for k, v in settings.items() if k not in dropped}
    if "batch_size" in own and settings.get("steps") is not None and settings.get("batch_size") is not None:
        out["steps"] = max(1, round(settings["steps"] * settings["batch_size"] / own["batch_size"]))
    return out



# The VAE study's backbone modes: each of its VAEs trains once fine-tuned and once frozen.
MODES = ("fine-tuned", "frozen")


@dataclass
class VAEStudyPreset:
    """A VAE study's scale; ``pretrain`` / ``vae`` go to the training configurations,
    ``gap`` holds ``GapBudget`` fields and ``num_images``."""

    data: str
    arch: str
    description: str
    pretrain: dict[str, Any] = field(default_factory=dict)
    vae: dict[str, Any] = field(default_factory=dict)
    loglik_samples: int = 1000
    loglik_images: int | None = None
    gap: dict[str, Any] = field(default_factory=dict)


VAE_PRESETS: dict[str, VAEStudyPreset] = {
    # The encoders are those of the fashion-mnist-cpu preset (1,400 steps on the retrieval
    # subset, where NAC's code magnitude has flattened), so that the VAEs start from
    # converged encoders; --encoders-from reuses that study's runs instead of training
    # them again. VAEs train 150 steps of 128 images (a third of an epoch: the early
    # phase, where a starting point can matter) and are measured on fixed test images.
    "fashion-mnist-vae": VAEStudyPreset(
        data="fashion-mnist", arch="smallconv",
        description="Fashion-MNIST (28x28), small conv net pretrained 1,400 steps on 5,000 images; "
                    "VAEs 150 steps of 128 images, backbone fine-tuned or frozen",
        pretrain=dict(PRESETS["fashion-mnist-cpu"].pretrain),
        vae=dict(steps=150, batch_size=128, latent_dim=32, log_every=10, curve_points=10, curve_samples=5,
                 curve_images=300, test_every=0, image_every=1),
        loglik_samples=100, loglik_images=300,
        gap=dict(num_images=100, samples=100, elbo_samples=50, fit_samples=2, lr=0.05, max_steps=300,
                 check_every=25, patience=4, tol=0.05),
    ),
}

# Options of the VAE study that change its VAEs (``vae_options`` of ``run_vae_study``).
VAE_OPTIONS = ("likelihood", "latent_dim", "steps")


def lookup_preset(preset, presets: dict[str, Any], what: str) -> tuple[str, Any]:
    """(name, preset) of a preset given by name in ``presets``, or ("custom", it) for an object."""
    if not isinstance(preset, str):
        return "custom", preset
    if preset not in presets:
        raise ConfigError(f"Unknown {what} '{preset}'; choose one of {', '.join(presets)}.")
    return preset, presets[preset]
