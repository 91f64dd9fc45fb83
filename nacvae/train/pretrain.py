"""The pretraining loop: data -> two augmented views -> encoder -> objective -> checkpoint.

Every random draw is a function of (seed, step): the epoch's shuffle is seeded by
(seed, epoch) and the augmentation and channel noise of a step by (seed, step). A run
resumed from any checkpoint therefore replays exactly what an uninterrupted run does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from nacvae import __version__
from nacvae.checkpoint import load_checkpoint, save_checkpoint
from nacvae.errors import ConfigError, TrainingError
from nacvae.models.backbones import build_backbone
from nacvae.models.heads import PretrainEncoder
from nacvae.runs import (
    CHECKPOINT, append_metrics, check_run_dir, create_run_dir, read_config, truncate_metrics, write_config,
)
from nacvae.train.config import PretrainConfig, resolve_device, validate_config
from nacvae.train.methods import Method, build_method
from nacvae.train.optim import build_optimizer, build_scheduler


def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """A distinct 63-bit seed per (run seed, step, stream), stable across runs."""
    return (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + stream * 0x94D049BB133111EB) % (2**63 - 1)


@dataclass
class PretrainData:
    images: torch.Tensor  # uint8 [N, C, H, W] on the training device
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_shape: tuple[int, int, int]
    augment: Any  # AugmentConfig


def load_pretrain_data(cfg: PretrainConfig, device: torch.device) -> PretrainData:
    from nacvae.data import channel_stats, default_augment, load_dataset

    data = load_dataset(cfg.data, "train", cfg.data_dir, download=cfg.download, image_size=cfg.image_size)
    mean, std = channel_stats(cfg.data, data)
    images = data.images
    if cfg.subset == "retrieval":
        from nacvae.data.pool import retrieval_pool

        pool = retrieval_pool(cfg.data, cfg.data_dir, cfg.image_size, download=cfg.download)
        images = pool.images[pool.split["train"]]
    if len(images) < cfg.batch_size:
        raise ConfigError(f"--batch-size {cfg.batch_size} is larger than the {len(images)} training images.")
    shape = tuple(images.shape[1:])
    return PretrainData(images.to(device), mean, std, shape, default_augment(cfg.data, shape, mean, std))


def build_encoder(cfg: PretrainConfig, image_shape: tuple[int, int, int]) -> PretrainEncoder:
    backbone, feature_dim = build_backbone(cfg.arch, image_shape[0], image_shape[1])
    return PretrainEncoder(backbone, feature_dim, cfg.code_dim, predictor=cfg.objective == "nac")


def build_pretrain_method(cfg: PretrainConfig, image_shape: tuple[int, int, int]) -> Method:
    torch.manual_seed(cfg.seed)
    encoder = build_encoder(cfg, image_shape)
    return build_method(cfg.objective, encoder, flip_prob=cfg.flip_prob, momentum_variant=cfg.momentum,
                        queue_size=cfg.queue_size, ema=cfg.ema, temperature=cfg.temperature,
                        l2_weight=cfg.l2_weight, seed=cfg.seed)


def checkpoint_meta(cfg: PretrainConfig, image_shape, feature_dim: int) -> dict[str, Any]:
    return dict(arch=cfg.arch, objective=cfg.objective, momentum=cfg.momentum, dataset=cfg.data,
                code_dim=cfg.code_dim, image_shape=list(image_shape), feature_dim=feature_dim,
                nacvae_version=__version__)


@torch.no_grad()
def code_statistics(a: torch.Tensor) -> dict[str, float]:
    bits = a > 0
    return {
        "codes/bit_balance": bits.float().mean().item(),
        "codes/mean_abs_tanh": torch.tanh(a).abs().mean().item(),
        "codes/distinct_in_batch": float(torch.unique(bits, dim=0).shape[0]),
    }


def pretrain(cfg: PretrainConfig, out: str | Path, resume: bool = False, progress: bool = True) -> Path:
    """Train an encoder as ``cfg`` says, writing the run folder ``out``; returns its path.

    With ``resume`` the configuration saved in ``out`` is used and training continues from
    its last checkpoint.
    """
    out = Path(out)
    check_run_dir(out, resume)
    if resume:
        saved = read_config(out)
        cfg = PretrainConfig.from_dict(saved["pretrain"])
    validate_config(cfg)
    device = resolve_device(cfg.device)
    data = load_pretrain_data(cfg, device)
    method = build_pretrain_method(cfg, data.image_shape).to(device)

    n = len(data.images)
    steps_per_epoch = n // cfg.batch_size  # the last incomplete batch is dropped
    total_steps = cfg.epochs * steps_per_epoch
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = build_optimizer(cfg.optimizer, params, cfg.lr, cfg.weight_decay)
    scheduler = build_scheduler(optimizer, total_steps, cfg.warmup_epochs * steps_per_epoch)
    meta = checkpoint_meta(cfg, data.image_shape, method.encoder.feature_dim)
    ckpt_path = out / CHECKPOINT
    checkpoint_every = cfg.checkpoint_every or steps_per_epoch

    start_step = 0
    if resume:
        ckpt = load_checkpoint(ckpt_path, kind="pretrain", expect={"arch": cfg.arch, "objective": cfg.objective})
        method.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_step = ckpt["step"]
        truncate_metrics(out, "train", start_step)
    create_run_dir(out)
    run_config = {
        "kind": "pretrain", "status": "running", "objective": cfg.objective, "dataset": cfg.data,
        "arch": cfg.arch, "code_dim": cfg.code_dim, "image_shape": list(data.image_shape),
        "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "device": str(device),
        "nacvae_version": __version__, "pretrain": cfg.to_dict(),
    }
    write_config(out, run_config)

    def save(step: int, complete: bool = False) -> None:
        save_checkpoint(ckpt_path, "pretrain", meta, cfg.to_dict(), method.state_dict(), step, complete,
                        optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tb"), purge_step=start_step if resume else None)
    bar = tqdm(total=total_steps, initial=start_step, disable=not progress, unit="step", dynamic_ncols=True)
    method.train()
    loss_sum = torch.zeros((), device=device)
    finite = torch.ones((), dtype=torch.bool, device=device)
    window_steps, window_start = 0, time.perf_counter()
    epoch_perm: tuple[int, torch.Tensor] | None = None
    try:
        for step in range(start_step, total_steps):
            epoch, i = divmod(step, steps_per_epoch)
            if epoch_perm is None or epoch_perm[0] != epoch:
                g = torch.Generator().manual_seed(step_seed(cfg.seed, epoch, stream=1))
                epoch_perm = (epoch, torch.randperm(n, generator=g).to(device))
            idx = epoch_perm[1][i * cfg.batch_size:(i + 1) * cfg.batch_size]
            gen = torch.Generator(device=device).manual_seed(step_seed(cfg.seed, step))
            batch = data.images[idx]
            x1 = _augment(batch, data, gen)
            x2 = _augment(batch, data, gen)
            loss, a1 = method.loss(x1, x2, gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            method.after_step()
            loss_sum += loss.detach()
            finite &= torch.isfinite(loss.detach())
            window_steps += 1
            done = step + 1
            if done % cfg.log_every == 0 or done % checkpoint_every == 0 or done == total_steps:
                if not bool(finite):
                    raise TrainingError(
                        f"The loss became non-finite before step {done}; the last good checkpoint is kept in {ckpt_path.parent}."
                    )
                elapsed = time.perf_counter() - window_start
                record = {
                    "event": "train", "step": done, "epoch": done / steps_per_epoch,
                    "loss": (loss_sum / window_steps).item(), "lr": optimizer.param_groups[0]["lr"],
                    "images_per_s": window_steps * cfg.batch_size / max(elapsed, 1e-9),
                    **code_statistics(a1.detach()),
                }
                for key, value in record.items():
                    if key not in ("event", "step"):
                        writer.add_scalar(key if "/" in key else f"train/{key}", value, done)
                append_metrics(out, record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{record['images_per_s']:.0f}")
                loss_sum.zero_()
                window_steps, window_start = 0, time.perf_counter()
                if done % checkpoint_every == 0 and done < total_steps:
                    save(done)
            bar.update(1)
        save(total_steps, complete=True)
    except BaseException as exc:
        run_config["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        write_config(out, run_config)
        raise
    finally:
        bar.close()
        writer.close()
    run_config.update(status="complete", finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
    write_config(out, run_config)
    return out


def _augment(batch: torch.Tensor, data: PretrainData, gen: torch.Generator) -> torch.Tensor:
    from nacvae.data import augment

    return augment(batch, data.augment, gen)
