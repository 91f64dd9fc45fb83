"""One versioned, self-describing checkpoint format, written atomically, read weights-only.

A checkpoint is a dict of tensors and plain values:
  format, version, kind ("pretrain" | "vae"), meta (arch, objective, dataset, code_dim,
  image_shape, feature_dim, ...), config (the resolved run configuration), step, complete,
  model (state dict), optimizer, scheduler.
Backbone weights sit in ``model`` under the prefix ``encoder.backbone.`` (pretraining) and
keep torchvision's key names below it; ``backbone_state_dict`` extracts them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from nacvae.errors import CheckpointError

FORMAT = "nacvae-checkpoint"
VERSION = 1
BACKBONE_PREFIX = "encoder.backbone."


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename into place, so no half-written file is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: str | Path, kind: str, meta: Mapping[str, Any], config: Mapping[str, Any],
                    model: Mapping[str, torch.Tensor], step: int, complete: bool = False,
                    **extra: Any) -> None:
    payload = {
        "format": FORMAT, "version": VERSION, "kind": kind, "meta": dict(meta), "config": dict(config),
        "step": int(step), "complete": bool(complete),
        # Plain NCHW layout whatever the training used (channels-last), for use elsewhere.
        "model": {k: v.detach().cpu().contiguous() for k, v in model.items()}, **extra,
    }
    atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path, kind: str | None = None, expect: Mapping[str, Any] | None = None) -> dict:
    """Load and check a checkpoint; ``expect`` maps meta keys to required values (None = any)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint file at {path}.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on damaged files
        raise CheckpointError(f"{path} is not a readable nacvae checkpoint ({type(exc).__name__}).") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a nacvae checkpoint.")
    if int(ckpt.get("version", 0)) > VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {ckpt['version']}, newer than this nacvae reads ({VERSION}); upgrade nacvae."
        )
    if kind is not None and ckpt.get("kind") != kind:
        raise CheckpointError(f"{path} is a {ckpt.get('kind')} checkpoint, not a {kind} checkpoint.")
    for key, want in (expect or {}).items():
        have = ckpt["meta"].get(key)
        if want is not None and have != want:
            raise CheckpointError(f"{path} was made with {key} {have!r}, which does not match the requested {want!r}.")
    return ckpt


def backbone_state_dict(ckpt: Mapping[str, Any], prefix: str = BACKBONE_PREFIX) -> dict[str, torch.Tensor]:
    """The backbone's weights with torchvision key names (the prefix removed)."""
    sd = {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
    if not sd:
        raise CheckpointError("The checkpoint holds no backbone weights.")
    return sd
