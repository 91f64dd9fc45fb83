"""Loading pretrained encoders out of run folders and checkpoints, for evaluation and VAEs."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from nacvae.checkpoint import backbone_state_dict, check_meta, input_description, load_checkpoint
from nacvae.data.sources import channel_stats, load_dataset
from nacvae.errors import CheckpointError, ConfigError
from nacvae.files import check_name_lengths, save_torch
from nacvae.models.backbones import build_backbone, stem_for
from nacvae.models.heads import PretrainEncoder
from nacvae.runs import CHECKPOINT


def checkpoint_path(run: str | Path | None = None, checkpoint: str | Path | None = None) -> Path:
    """The checkpoint named directly, or the one inside a run folder."""
    if (run is None) == (checkpoint is None):
        raise ConfigError("Give exactly one of --run and --checkpoint.")
    if checkpoint is not None:
        return Path(checkpoint)
    path = Path(run) / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{run} is not a finished pretraining run folder (no {CHECKPOINT}).")
    return path


def load_encoder(path: str | Path, arch: str | None = None,
                 image_shape: tuple[int, int, int] | None = None) -> tuple[PretrainEncoder, dict[str, Any]]:
    """Rebuild the pretraining encoder (backbone and heads) of a pretraining checkpoint.

    ``arch`` and ``image_shape``, when given, must match what the checkpoint was trained with.
    """
    expect = {"arch": arch, "image_shape": list(image_shape) if image_shape is not None else None}
    ckpt = load_checkpoint(path, kind="pretrain", expect=expect)
    meta = check_meta(path, ckpt)
    channels, size = meta["image_shape"][0], meta["image_shape"][1]
    backbone, feature_dim = build_backbone(meta["arch"], channels, size, stem=stem_for(meta.get("dataset")))
    prefix = "encoder."
    # The weights say which heads the encoder had: a prediction head (NAC's), a linear projection.
    predictor = any(k.startswith(prefix + "predictor.") for k in ckpt["model"])
    head = "linear" if prefix + "projector.weight" in ckpt["model"] else "mlp"
    encoder = PretrainEncoder(backbone, feature_dim, meta["code_dim"], predictor=predictor, head=head)
    state = {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
    try:
        encoder.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not hold weights of a {meta['arch']} encoder.") from exc
    _set_binarisation(encoder, meta, path)
    return encoder, {**meta, "checkpoint": str(path), "step": ckpt["step"], "complete": ckpt["complete"],
                     "config": ckpt["config"]}


def _set_binarisation(encoder: PretrainEncoder, meta: dict[str, Any], path) -> None:
    """The binarisation the checkpoint records (nacvae.train.binarisation); sgn(a) when it has none."""
    entry = meta.get("binarisation") or {"rule": "sign"}
    try:
        threshold = entry.get("threshold")
        encoder.set_binarisation(entry["rule"], None if threshold is None else torch.tensor(threshold))
    except (AttributeError, KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path} records a binarisation nacvae cannot read ({entry!r}).") from None


def random_encoder(arch: str, image_shape: tuple[int, int, int], code_dim: int = 128,
                   seed: int = 0, dataset: str | None = None) -> tuple[PretrainEncoder, dict[str, Any]]:
    """The randomly initialised baseline: same architecture and heads (and the ResNet stem
    of ``dataset``), no training."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(seed)
        backbone, feature_dim = build_backbone(arch, image_shape[0], image_shape[1], stem=stem_for(dataset))
        encoder = PretrainEncoder(backbone, feature_dim, code_dim)
    return encoder, {"arch": arch, "objective": "random", "code_dim": code_dim, "image_shape": list(image_shape),
                     "feature_dim": feature_dim, "checkpoint": None, "seed": seed}


def export_backbone(path: str | Path, out: str | Path, overwrite: bool = False) -> dict[str, torch.Tensor]:
    """Write the backbone's plain state dict (torchvision key names) to ``out``.

    The weights are loaded into a fresh backbone first, so a damaged checkpoint is refused
    rather than exported; an existing ``out`` is replaced only with ``overwrite``. The state
    dict's ``_metadata["nacvae"]`` (where torch keeps a state dict's own metadata, which
    ``load_state_dict`` ignores for names that are not modules) holds the architecture and
    the input the backbone expects: channels, image size, mean and std.
    """
    out = Path(out)
    check_name_lengths(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; pass --force to replace it.")
    if out.is_dir():
        raise ConfigError(f"{out} is a folder; give a file name for the exported state dict.")
    ckpt = load_checkpoint(path, kind="pretrain")
    meta = check_meta(path, ckpt)
    sd = OrderedDict(backbone_state_dict(ckpt))
    backbone, _ = build_backbone(meta["arch"], meta["image_shape"][0], meta["image_shape"][1],
                                 stem=stem_for(meta.get("dataset")))
    try:
        backbone.load_state_dict(sd)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not hold the weights of a {meta['arch']} backbone (a tensor has "
                              "another shape or name), so it was not exported.") from exc
    sd._metadata = OrderedDict(nacvae=export_info(ckpt))
    save_torch(out, sd, overwrite=overwrite)
    return sd


def export_info(ckpt: dict[str, Any]) -> dict[str, Any]:
    """Architecture and input normalisation of a pretraining checkpoint (older checkpoints
    without a saved mean and std take the dataset's, as their training did)."""
    meta, config = ckpt["meta"], ckpt.get("config") or {}
    mean, std = meta.get("mean"), meta.get("std")
    if mean is None or std is None:
        dataset = meta["dataset"]
        train = None
        if dataset.startswith("folder:"):
            train = load_dataset(dataset, "train", config.get("data_dir"), download=False,
                                 image_size=config.get("image_size"))
        mean, std = channel_stats(dataset, train)
    return {"arch": meta["arch"], "dataset": meta["dataset"],
            **input_description(meta["image_shape"], mean, std)}
