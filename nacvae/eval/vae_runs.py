"""Trained VAEs read back from their run folders or checkpoints, and their test log-likelihood.

``load_vae`` rebuilds a VAE from the description and weights its checkpoint holds;
``load_vae_with_test_images`` adds the test split of its dataset observed exactly as
training observed it (``nacvae.models.vae_inputs``); ``evaluate_run`` is ``nacvae eval
loglik``: the importance-weighted log-likelihood of ``nacvae.eval.loglik`` on those
images, optionally recorded in the run's metrics. Training calls ``evaluate_run`` at the
end of a run, and ``nacvae.eval.gap`` loads its VAEs here, so none of this depends on the
training loop.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyro
import torch

from nacvae.checkpoint import load_checkpoint
from nacvae.checks import check_int, check_seed
from nacvae.devices import resolve_device
from nacvae.errors import CheckpointError, ConfigError
from nacvae.eval.encoders import record as record_result
from nacvae.eval.loglik import evaluate_vae
from nacvae.models.vae import VAE
from nacvae.models.vae_inputs import observed_test_images
from nacvae.runs import run_checkpoint

__all__ = ["evaluate_run", "load_vae", "load_vae_with_test_images"]


def _vae_checkpoint(path: str | Path) -> tuple[Path, Path | None]:
    """(checkpoint file, run folder or None) of a VAE run folder or checkpoint."""
    path = Path(path)
    if path.is_dir():
        return run_checkpoint(path, "vae", "VAE"), path
    if not path.exists():
        raise CheckpointError(f"No VAE run folder or checkpoint at {path}.")
    return path, None


def load_vae(path: str | Path, device: str | torch.device = "cpu") -> tuple[VAE, dict[str, Any]]:
    """Rebuild a trained VAE from a VAE run folder or checkpoint; returns ``(vae, meta)``.

    The VAE is in eval mode on ``device``; ``meta`` is the checkpoint's meta plus
    ``checkpoint``, ``run``, ``step``, ``complete`` and ``config``.
    """
    # Imported here, as in training: torchvision comes in only when a VAE is built.
    from nacvae.models.backbones import build_backbone

    ckpt_path, run = _vae_checkpoint(path)
    ckpt = load_checkpoint(ckpt_path, kind="vae")
    meta = ckpt["meta"]
    try:
        c, h, _ = meta["image_shape"]
        backbone, feature_dim = build_backbone(meta["arch"], c, h)
        vae = VAE(backbone, feature_dim, meta["image_shape"], latent_dim=meta["latent_dim"],
                  likelihood=meta["likelihood"], mean=meta["mean"], std=meta["std"],
                  freeze_encoder=meta.get("freeze_encoder", False), decoder_width=meta.get("decoder_width", 64))
        vae.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{ckpt_path} does not hold a complete description and weights of a VAE.") from exc
    info = {**meta, "checkpoint": str(ckpt_path), "run": None if run is None else str(run), "step": ckpt["step"],
            "complete": ckpt["complete"], "config": ckpt["config"]}
    return vae.to(device).eval(), info


def load_vae_with_test_images(run_or_checkpoint, device: torch.device, num_images: int | None = None,
                              data_dir: str | None = None) -> tuple[VAE, dict[str, Any], torch.Tensor]:
    """A trained VAE, its meta, and the first ``num_images`` (None: all) images of its
    dataset's test split, observed as in training (on the CPU)."""
    from nacvae.data import load_dataset  # the data package only when data is loaded

    check_int("num-images", num_images, optional=True)
    vae, meta = load_vae(run_or_checkpoint, device)
    cfg = meta["config"] if isinstance(meta.get("config"), dict) else {}  # the run's VAEConfig
    test = load_dataset(meta["dataset"], "test", data_dir if data_dir is not None else cfg.get("data_dir"),
                        download=cfg.get("download", True), image_size=int(meta["image_shape"][-1]))
    if list(test.image_shape) != list(meta["image_shape"]):
        raise ConfigError(f"The {meta['dataset']} test images are {test.image_shape}, but the VAE models "
                          f"{tuple(meta['image_shape'])} images.")
    if num_images is not None and num_images > len(test):
        raise ConfigError(f"--num-images {num_images} is more than the {len(test)} test images.")
    x = observed_test_images(test.images, meta["likelihood"], meta.get("binarize", "threshold"), cfg.get("seed", 0))
    return vae, meta, x if num_images is None else x[:num_images]


def evaluate_run(run: str | Path | None = None, checkpoint: str | Path | None = None, samples: int = 1000,
                 batch_size: int = 100, chunk_size: int | None = None, num_images: int | None = None,
                 seed: int = 0, device: str = "auto", data_dir: str | None = None,
                 record: bool = True) -> dict[str, Any]:
    """Importance-weighted test log-likelihood of a trained VAE (``nacvae eval loglik``).

    Give a VAE ``run`` folder or a ``checkpoint``. The first ``num_images`` test images
    (default all) of the VAE's dataset are evaluated with ``samples`` importance samples
    each (``evaluate_vae``); randomness is seeded with ``seed``. With a run folder and
    ``record``, ``{"event": "eval_loglik", ...}`` is appended to its metrics; when that
    cannot be written, ``not_recorded`` holds the sentence that says so. Returns
    evaluate_vae's fields plus what identifies the VAE (init, dataset, arch, likelihood,
    latent_dim, step, ...) and ``seconds``.
    """
    if (run is None) == (checkpoint is None):
        raise ConfigError("Give exactly one of --run and --checkpoint.")
    check_int("samples", samples)
    check_int("batch-size", batch_size)
    check_int("chunk-size", chunk_size, optional=True)
    check_seed(seed)
    dev = resolve_device(device)
    vae, meta, x = load_vae_with_test_images(run if run is not None else checkpoint, dev, num_images, data_dir)
    pyro.set_rng_seed(int(seed) % 2**32)
    started = time.perf_counter()
    result = evaluate_vae(vae, x.to(dev), num_samples=samples, batch_size=batch_size, chunk_size=chunk_size)
    result.update({
        "init": meta.get("init"), "dataset": meta["dataset"], "arch": meta["arch"], "likelihood": meta["likelihood"],
        "latent_dim": meta["latent_dim"], "step": meta["step"], "complete": meta["complete"],
        "encoder_objective": meta.get("encoder_objective"), "encoder_checkpoint": meta.get("encoder_checkpoint"),
        "checkpoint": meta["checkpoint"], "run": meta["run"], "seed": int(seed),
        "seconds": time.perf_counter() - started,
    })
    if record and meta["run"] is not None:
        note = record_result(meta["run"], "eval_loglik", result)
        if note is not None:
            result["not_recorded"] = note
    return result
