"""Per-dataset presets: each dataset family's default architecture and the training
settings both stages start from, before a method's recipe and the user's options.

Read without torch (``--help`` shows these values), by the configuration of both stages
and by the evaluators (the architecture of a random encoder).
"""

from __future__ import annotations

from typing import Any

from nacvae.errors import ConfigError

DEFAULT_DATA = "digits"  # bundled with scikit-learn: every command runs offline on it
FOLDER_PREFIX = "folder:"
WEBDATASET_PREFIX = "webdataset:"

# Default architectures: a small conv net for 8x8 digits, the paper's ResNet-50 for CIFAR-10
# and 224-px data, VGG-16-BN as in the hashing papers for FLICKR-25K.
ARCHITECTURE = {
    "digits": "smallconv", "fashion-mnist": "resnet18", "cifar10": "resnet50", "folder": "resnet18",
    "imagenet": "resnet50", "flickr25k": "vgg16_bn", "webdataset": "resnet50",
}

# Pretraining: the paper's CIFAR-10 settings (docs/method.md, "Optimisation"); CPU-sized ones
# for the small datasets. Warm-ups are in steps: NAC needs about 500 at a LARS-sized lr
# whatever the dataset (a few dozen can push it into the trivial solution z = 0 at large p;
# see docs/results.md). ``queue_size`` is the default of the methods that keep a queue.
# ``monitor_every``: steps between the online k-NN / mAP checks (nacvae.train.monitor), sized to
# cost under 5% of training (experiments/README.md); off for the streamed datasets, which it skips.
PRETRAIN: dict[str, dict[str, Any]] = {
    "cifar10": dict(batch_size=1000, optimizer="lars", lr=3.0, epochs=1000, warmup_steps=500, queue_size=50_000,
                  monitor_every=1000),
    "fashion-mnist": dict(batch_size=512, optimizer="lars", lr=1.5, epochs=200, warmup_steps=500, queue_size=16_384,
                  monitor_every=500),
    "digits": dict(batch_size=128, optimizer="lars", lr=3.0, steps=1500, warmup_steps=500, queue_size=1_024,
                  monitor_every=150),
    "folder": dict(batch_size=256, optimizer="lars", lr=0.75, epochs=200, warmup_steps=500, queue_size=16_384,
                  monitor_every=500),
    # 224-px datasets, streamed (experiments/README.md gives the paper's configurations).
    "imagenet": dict(batch_size=256, optimizer="lars", lr=0.3, epochs=200, warmup_epochs=10, queue_size=65_536,
                  monitor_every=0),
    "flickr25k": dict(batch_size=1000, optimizer="lars", lr=3.0, steps=10_000, warmup_steps=500, queue_size=4_096,
                  monitor_every=0),
    "webdataset": dict(batch_size=256, optimizer="lars", lr=0.3, epochs=200, warmup_epochs=10, queue_size=65_536,
                  monitor_every=0),
}

# The VAE stage (its encoder's architecture comes from the encoder, or ARCHITECTURE for a random one).
VAE: dict[str, dict[str, Any]] = {
    "digits": dict(epochs=100, batch_size=128),
    "fashion-mnist": dict(epochs=50, batch_size=128),
    "cifar10": dict(epochs=100, batch_size=128),
    "folder": dict(epochs=100, batch_size=128),
}


def dataset_family(name: str) -> str:
    """``folder:PATH`` -> folder, ``webdataset:URL`` -> webdataset, else the name itself."""
    if name.startswith(FOLDER_PREFIX):
        return "folder"
    if name.startswith(WEBDATASET_PREFIX):
        return "webdataset"
    return name


def _known(table: dict[str, Any]) -> str:
    named = [k for k in table if k not in ("folder", "webdataset")]
    prefixes = [p + w for p, w, k in ((FOLDER_PREFIX, "PATH", "folder"), (WEBDATASET_PREFIX, "URL_PATTERN", "webdataset"))
                if k in table]
    return ", ".join(named + prefixes)


def preset(table: dict[str, dict[str, Any]], data: str) -> dict[str, Any]:
    """A copy of ``table``'s preset for dataset ``data``; an unknown name is a ConfigError."""
    family = dataset_family(data)
    if family not in table:
        raise ConfigError(f"Unknown dataset '{data}'; choose one of {_known(table)}.")
    return dict(table[family])


def default_arch(data: str) -> str:
    family = dataset_family(data)
    if family not in ARCHITECTURE:
        raise ConfigError(f"Unknown dataset '{data}'; give --arch.")
    return ARCHITECTURE[family]


def pretrain_preset(data: str) -> dict[str, Any]:
    """The pretraining preset of ``data``, its architecture included."""
    return {"arch": default_arch(data), **preset(PRETRAIN, data)}


def help_values(key: str, table: dict[str, dict[str, Any]] | None = None) -> str:
    """``digits 3.0, cifar10 3.0, ...``: a preset value per dataset, for --help."""
    table = PRETRAIN if table is None else table
    if key == "arch":
        return ", ".join(f"{k} {v}" for k, v in ARCHITECTURE.items() if k != "webdataset")
    return ", ".join(f"{k} {v[key]}" for k, v in table.items() if key in v and k != "webdataset")
