"""One versioned, self-describing checkpoint format, written atomically, read weights-only
and checked, so that a damaged or foreign file ends in one sentence.

A checkpoint is a dict of tensors and plain values:
  format, version, kind ("pretrain" | "vae"), meta (arch, objective, dataset, code_dim,
  image_shape, feature_dim, ...), config (the resolved run configuration), step, complete,
  model (state dict), optimizer, scheduler.
Backbone weights sit in ``model`` under the prefix ``encoder.backbone.`` (pretraining) and
keep torchvision's key names below it; ``backbone_state_dict`` extracts them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from nacvae.errors import CheckpointError
from nacvae.files import save_torch

FORMAT = "nacvae-checkpoint"
VERSION = 1
BACKBONE_PREFIX = "encoder.backbone."


def save_checkpoint(path: str | Path, kind: str, meta: Mapping[str, Any], config: Mapping[str, Any],
                    model: Mapping[str, torch.Tensor], step: int, complete: bool = False,
                    **extra: Any) -> None:
    payload = {
        "format": FORMAT, "version": VERSION, "kind": kind, "meta": dict(meta), "config": dict(config),
        "step": int(step), "complete": bool(complete),
        # Plain NCHW layout whatever the training used (channels-last), for use elsewhere.
        "model": {k: v.detach().cpu().contiguous() for k, v in model.items()}, **extra,
    }
    save_torch(path, payload)


# What every checkpoint's meta holds, by kind, and the type of each entry.
_META = {
    "pretrain": {"arch": str, "objective": str, "code_dim": int, "image_shape": list},
    "vae": {"arch": str, "image_shape": list, "latent_dim": int, "likelihood": str},
}


def load_checkpoint(path: str | Path, kind: str | None = None, expect: Mapping[str, Any] | None = None) -> dict:
    """Load and check a checkpoint; ``expect`` maps meta keys to required values (None = any).

    Whatever the file holds, a checkpoint that cannot be used ends in a CheckpointError.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint file at {path}.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on damaged files
        raise CheckpointError(f"{path} is not a readable nacvae checkpoint ({type(exc).__name__}).") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a nacvae checkpoint.")
    version = ckpt.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path} is damaged: its format version {version!r} is not a version number.")
    if version > VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}, newer than this nacvae reads ({VERSION}); upgrade nacvae."
        )
    if kind is not None and ckpt.get("kind") != kind:
        raise CheckpointError(f"{path} is a {ckpt.get('kind')} checkpoint, not a {kind} checkpoint.")
    if not isinstance(ckpt.get("meta"), dict):
        raise CheckpointError(f"{path} is damaged: it has no meta description.")
    for key, want in (expect or {}).items():
        have = ckpt["meta"].get(key)
        if want is not None and have != want:
            raise CheckpointError(f"{path} was made with {key} {have!r}, which does not match the requested {want!r}.")
    _check_contents(path, ckpt)
    return ckpt


def _check_contents(path: Path, ckpt: dict) -> None:
    def damaged(what: str) -> CheckpointError:
        return CheckpointError(f"{path} is damaged: {what}.")

    if ckpt.get("kind") not in _META:
        raise damaged(f"its kind {ckpt.get('kind')!r} is neither pretrain nor vae")
    model = ckpt.get("model")
    if not isinstance(model, dict) or not model or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()):
        raise damaged("it holds no model weights")
    step = ckpt.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise damaged(f"its step {step!r} is not a step count")
    if not isinstance(ckpt.get("complete"), bool):
        raise damaged("it does not say whether its run was complete")
    if not isinstance(ckpt.get("config"), dict):
        raise damaged("it holds no configuration")


def check_meta(path: str | Path, ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint's meta, checked to hold what rebuilding its model needs."""
    meta = ckpt["meta"]
    for key, typ in _META[ckpt["kind"]].items():
        if not isinstance(meta.get(key), typ) or isinstance(meta.get(key), bool):
            raise CheckpointError(f"{path} is damaged: its meta description lacks a valid {key}.")
    shape = meta["image_shape"]
    if len(shape) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape):
        raise CheckpointError(f"{path} is damaged: its image shape {shape!r} is not three positive sizes.")
    return meta


def restore_training_state(path: str | Path, ckpt: Mapping[str, Any], model: torch.nn.Module,
                           optimizer: torch.optim.Optimizer, scheduler: Any = None) -> int:
    """Load a checkpoint's model, optimiser and scheduler states to continue its run;
    returns its step. Anything that does not fit (a tensor of another shape, another set
    of parameters) is a CheckpointError, before any training step."""
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} does not hold weights of this run's model (a tensor has another shape "
                              f"or name).") from exc
    for name, target in (("optimizer", optimizer), ("scheduler", scheduler)):
        if target is None:
            continue
        state = ckpt.get(name)
        if not isinstance(state, dict):
            raise CheckpointError(f"{path} is damaged: it holds no {name} state to continue from.")
        try:
            target.load_state_dict(state)
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise CheckpointError(f"{path} is damaged: its {name} state does not fit this run.") from exc
    # load_state_dict takes optimiser buffers of any shape; a wrong one would fail mid-step.
    for group in optimizer.param_groups:
        for p in group["params"]:
            for value in optimizer.state.get(p, {}).values():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != p.shape:
                    raise CheckpointError(f"{path} is damaged: its optimizer state has a tensor of shape "
                                          f"{tuple(value.shape)} for a parameter of shape {tuple(p.shape)}.")
    return int(ckpt["step"])


def backbone_state_dict(ckpt: Mapping[str, Any], prefix: str = BACKBONE_PREFIX) -> dict[str, torch.Tensor]:
    """The backbone's weights with torchvision key names (the prefix removed)."""
    sd = {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
    if not sd:
        raise CheckpointError("The checkpoint holds no backbone weights.")
    return sd


def input_description(image_shape, mean, std) -> dict[str, Any]:
    """What the backbone expects: ``(x / 255 - mean) / std`` per channel, of square images."""
    return {"channels": int(image_shape[0]), "image_size": int(image_shape[-1]),
            "mean": [float(m) for m in mean], "std": [float(s) for s in std]}
