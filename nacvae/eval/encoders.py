"""Which encoder a downstream evaluation looks at, and how its result is recorded.

``resolve_encoder`` turns exactly one source into an encoder in eval mode on the CPU: a
pretraining run folder, a pretraining checkpoint, a plain backbone state dict as
``nacvae export`` writes it (``BackboneOnly``: features only, so linear evaluation only),
or the seeded random baseline with the architecture and heads pretraining would build.
It also says which dataset to evaluate on, by default the one the encoder was trained
on. ``encoder_summary`` picks the fields of its description that identify what was
evaluated, and ``record`` appends a result to a run's metrics when the run can be written.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nacvae import presets
from nacvae.checks import check_int
from nacvae.data.catalog import open_dataset
from nacvae.errors import CheckpointError, ConfigError, StorageError
from nacvae.models.backbones import ARCHITECTURES, build_backbone, stem_for
from nacvae.presets import default_arch
from nacvae.runs import append_metrics, read_config
from nacvae.transfer import checkpoint_path, load_encoder, random_encoder

__all__ = ["BackboneOnly", "encoder_summary", "record", "resolve_encoder"]

DEFAULT_CODE_DIM = 128
DEFAULT_DATA = presets.DEFAULT_DATA


class BackboneOnly(nn.Module):
    """A backbone without heads, from a plain state dict: features only, no codes."""

    projector = None

    def __init__(self, backbone: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim


def _check_arch(arch: str | None) -> None:
    if arch is not None and arch not in ARCHITECTURES:
        raise ConfigError(f"Unknown architecture '{arch}'; choose one of {', '.join(ARCHITECTURES)}.")


def _run_config(run: Path) -> dict[str, Any]:
    if not run.is_dir():
        raise CheckpointError(f"The run folder {run} does not exist.")
    config = read_config(run)
    if config.get("kind") != "pretrain":
        raise CheckpointError(f"{run} is a {config.get('kind')} run, not a pretraining run.")
    return config


def _load_plain_state_dict(path: Path) -> dict[str, torch.Tensor] | None:
    """The file as a plain ``{name: tensor}`` dict (as ``nacvae export`` writes), else None."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - anything unreadable is simply not a state dict
        return None
    if isinstance(obj, dict) and obj and "format" not in obj and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        return obj
    return None


def _dataset_shape(data: str, data_dir, image_size: int | None, download: bool) -> tuple[int, int, int]:
    return open_dataset(data, "train", data_dir, download=download, image_size=image_size).image_shape


def resolve_encoder(
    run: str | Path | None = None,
    checkpoint: str | Path | None = None,
    init: str | None = None,
    arch: str | None = None,
    data: str | None = None,
    data_dir: str | Path | None = None,
    seed: int = 0,
    code_dim: int | None = None,
    image_size: int | None = None,
    download: bool = True,
) -> tuple[nn.Module, dict[str, Any], str, str | None]:
    """The encoder to evaluate, its description, and the dataset to evaluate it on.

    Exactly one source: ``run`` (a pretraining run folder), ``checkpoint`` (a pretraining
    checkpoint, or a plain backbone state dict together with ``arch``), or
    ``init="random"`` (same architecture and heads, initialised with ``seed``; ``arch``
    defaults to the dataset's, as in pretraining; ``code_dim`` bits, 128 by default). ``arch`` given with a run or checkpoint
    must match it. ``data`` / ``data_dir`` / ``image_size`` default to the run's (the
    checkpoint's configuration); the random baseline takes ``data`` or digits.

    Returns ``(encoder, meta, data, data_dir)``; the encoder is in eval mode on the CPU
    and ``meta["image_shape"]`` is the input shape it expects.
    """
    _check_arch(arch)
    if init is not None:
        if init != "random":
            raise ConfigError(f"Unknown --init '{init}'; the only initialisation is 'random'.")
        if run is not None or checkpoint is not None:
            raise ConfigError("--init random cannot be combined with --run or --checkpoint.")
        data = data or DEFAULT_DATA
        code_dim = DEFAULT_CODE_DIM if code_dim is None else code_dim
        check_int("code-dim", code_dim)
        shape = _dataset_shape(data, data_dir, image_size, download)
        arch = default_arch(data) if arch is None else arch
        encoder, meta = random_encoder(arch, shape, code_dim=code_dim, seed=seed, dataset=data)
        meta = {**meta, "run": None}
        return encoder.eval(), meta, data, None if data_dir is None else str(data_dir)

    if run is None and checkpoint is None:
        raise ConfigError("Give --run or --checkpoint, or --init random.")
    if run is not None and checkpoint is not None:
        raise ConfigError("Give only one of --run and --checkpoint.")
    if run is not None:
        _run_config(Path(run))
    path = checkpoint_path(run, checkpoint)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint file at {path}.")
    try:
        encoder, meta = load_encoder(path, arch=arch)
    except CheckpointError:
        state = _load_plain_state_dict(path) if checkpoint is not None else None
        if state is None:
            raise
        return _backbone_from_state_dict(path, state, arch, data, data_dir, image_size, download)
    if code_dim is not None and code_dim != meta["code_dim"]:
        raise ConfigError(f"{path} has {meta['code_dim']}-bit codes, not the {code_dim} asked for with --code-dim.")
    config = meta.get("config") or {}
    if data is None:
        data = meta.get("dataset") or config.get("data")
        if data_dir is None:
            data_dir = config.get("data_dir")
    meta = {k: v for k, v in meta.items() if k != "config"}
    meta["run"] = None if run is None else str(run)
    return encoder.eval(), meta, data, None if data_dir is None else str(data_dir)


def _backbone_from_state_dict(path, state, arch, data, data_dir, image_size, download):
    if arch is None:
        raise CheckpointError(
            f"{path} is a plain state dict, not a nacvae checkpoint; pass --arch to say which backbone it holds."
        )
    data = data or DEFAULT_DATA
    shape = _dataset_shape(data, data_dir, image_size, download)
    backbone, feature_dim = build_backbone(arch, shape[0], shape[1], stem=stem_for(data))
    try:
        backbone.load_state_dict(state)
    except RuntimeError:
        raise CheckpointError(
            f"{path} does not hold the weights of a {arch} backbone for {shape[0]}-channel images."
        ) from None
    meta = {"arch": arch, "objective": None, "code_dim": None, "image_shape": list(shape),
            "feature_dim": feature_dim, "checkpoint": str(path), "dataset": None, "run": None}
    return BackboneOnly(backbone, feature_dim).eval(), meta, data, None if data_dir is None else str(data_dir)


def encoder_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``resolve_encoder``'s meta that identify what was evaluated."""
    keys = ("objective", "arch", "code_dim", "checkpoint", "run", "step", "complete", "seed")
    out = {k: meta.get(k) for k in keys if k in meta}
    if meta.get("objective") == "random":
        out["init"] = "random"
    if meta.get("dataset"):
        out["pretrain_dataset"] = meta["dataset"]
    return out


def record(run: str | Path, event: str, result: dict[str, Any]) -> str | None:
    """Append ``{"event": event, "time": ..., **result}`` to the run's metrics file.

    Returns None, or, when the file cannot be written (a colleague's read-only run, a full
    disk), the sentence saying that the result was not recorded: a result computed at length
    is worth having all the same, so this is not an error. Every evaluator records here."""
    try:
        append_metrics(Path(run), {"event": event, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **_plain(result)})
    except StorageError as exc:
        reason = str(exc).rstrip(".")
        reason = "t" + reason[1:] if reason.startswith("The ") else reason  # mid-sentence now
        return f"The result was not recorded in {run}: {reason}."
    return None


def _plain(result: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN: report an undefined number as null.
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result.items()}
