"""The pretraining loop: data -> two augmented views -> encoder -> objective -> checkpoint.

Every random draw is a function of (seed, step, rank): the epoch's shuffle is seeded by
(seed, epoch) and is the same in every process, and the augmentation and channel noise of a
step by (seed, step, rank). A run resumed from any checkpoint therefore replays exactly what
an uninterrupted run with the same number of processes does.

Under torchrun (see docs/scaling.md) --batch-size is the global batch: each of the W
processes takes its contiguous slice of the step's B indices, the encoder is wrapped in
DistributedDataParallel, and the objectives' negatives (NAC, SimCLR) or queues (MoCo,
NAC-momentum) see every process's rows. Only rank 0 writes the run folder.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nacvae import __version__, distributed, registry
from nacvae.checkpoint import input_description, load_checkpoint, restore_training_state
from nacvae.data import augment, default_augment, two_views
from nacvae.data.catalog import dataset_stats, open_dataset
from nacvae.data.pool import retrieval_pool
from nacvae.data.shards import shard_steps
from nacvae.data.bad_images import BadImages
from nacvae.data.stream import StreamedImages, default_workers, train_batches
from nacvae.devices import resolve_device
from nacvae.errors import ConfigError
from nacvae.methods.base import Method
from nacvae.runs import (
    CHECKPOINT, append_metrics, check_run_dir, hold_run, read_config, read_run_config, starts_afresh, truncate_metrics,
    write_config
)
from nacvae.seeds import step_seed
from nacvae.train.binarisation import binarisation_meta, training_bit_means
from nacvae.train.config import PretrainConfig, check_world_size, saved_config, schedule_steps, validate_config
from nacvae.train.loop import (EpochOrder, RunCheckpoint, RunState, StepProgress, Window, events_and_bar, is_log_step,
                               steps)
from nacvae.train.methods import build_method, encoder_step_probe, prepare_method
from nacvae.train.monitor import monitor_step, open_run_monitor
from nacvae.train.optim import build_optimizer, build_scheduler
from nacvae.train.pictures import view_pairs
from nacvae.train.prefetch import Prefetch, worth_prefetching
from nacvae.precision import Decision, probe_images, resolve_amp
from nacvae.train.telemetry import CollapseMonitor, code_statistics, collapse_message

# Make the next step's views in a background thread where it pays (train/prefetch.py); the
# numbers are the same either way, which tests check by turning it off.
PREFETCH = True

@dataclass
class PretrainData:
    images: torch.Tensor | None  # uint8 [N, C, H, W] on the training device; None when streamed
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_shape: tuple[int, int, int]
    augment: Any  # AugmentConfig
    stream: Any = None  # StreamedImages read batch by batch (nacvae.data.stream), or None
    bad_images: BadImages | None = None  # with --skip-bad-images: the unreadable images replaced

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.stream)


def load_pretrain_data(cfg: PretrainConfig, device: torch.device) -> PretrainData:
    data = open_dataset(cfg.data, "train", cfg.data_dir, download=cfg.download, image_size=cfg.image_size)
    if isinstance(data, StreamedImages):
        return _streamed_pretrain_data(cfg, data)
    # Normalise with the whole train split's statistics even for a subset: evaluation does too.
    mean, std = dataset_stats(cfg.data, data)
    images = data.images
    if cfg.subset == "retrieval":
        pool = retrieval_pool(cfg.data, cfg.data_dir, cfg.image_size, download=cfg.download)
        images = pool.images[pool.split["train"]]
    if len(images) < cfg.batch_size:
        raise ConfigError(f"--batch-size {cfg.batch_size} is larger than the {len(images)} training images.")
    shape = tuple(images.shape[1:])
    return PretrainData(images.to(device), mean, std, shape, default_augment(cfg.data, shape, mean, std))


def _streamed_pretrain_data(cfg: PretrainConfig, data) -> PretrainData:
    if not cfg.spec.streams:
        streamable = [name for name in registry.names() if registry.spec(name).streams]
        raise ConfigError(f"--objective {cfg.objective} needs the training images in memory, and {cfg.data} is read "
                          f"batch by batch; use one of {', '.join(streamable)}.")
    if cfg.subset == "retrieval" and data.name != "flickr25k":
        raise ConfigError(f"--subset retrieval is not defined for {cfg.data}, which is read batch by batch.")
    if len(data) < cfg.batch_size:
        raise ConfigError(f"--batch-size {cfg.batch_size} is larger than the {len(data)} training images.")
    workers = default_workers() if cfg.workers is None else cfg.workers
    bad = BadImages() if cfg.skip_bad_images else None
    mean, std = dataset_stats(cfg.data, data, workers=workers, bad_images=bad)
    augment = default_augment(cfg.data, data.image_shape, mean, std)
    if data.crop == "imagenet":
        # The workers cut each view's random-resized crop out of the whole image; the batched
        # augmentation then only flips, jitters and greys (an identity crop of the whole view).
        augment = dataclasses.replace(augment, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    return PretrainData(None, mean, std, data.image_shape, augment, stream=data, bad_images=bad)


def checkpoint_meta(cfg: PretrainConfig, image_shape, feature_dim: int) -> dict[str, Any]:
    return dict(arch=cfg.arch, objective=cfg.objective, momentum=bool(cfg.options.get("momentum")), dataset=cfg.data,
                code_dim=cfg.code_dim, image_shape=list(image_shape), feature_dim=feature_dim,
                nacvae_version=__version__)


def train_step(method: Method, optimizer: torch.optim.Optimizer, x1: torch.Tensor, x2: torch.Tensor,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step; returns the detached (loss, view-1 pre-activations)."""
    loss, a1 = method.loss(x1, x2, generator)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    method.after_step()
    return loss.detach(), a1.detach()


def pretrain(cfg: PretrainConfig, out: str | Path, resume: bool = False, progress: bool = True,
             dist_timeout: float | None = None) -> Path:
    """Train an encoder as ``cfg`` says, writing the run folder ``out``; returns its path.

    With ``resume`` the configuration saved in ``out`` is used and training continues from
    its last checkpoint. Under torchrun every process calls this; only rank 0 writes, and
    holds the folder's lock (``nacvae.runs.hold_run``) while it trains; ``dist_timeout``
    (minutes, default ``distributed.DEFAULT_TIMEOUT_MINUTES``) bounds each collective.
    """
    out = Path(out)
    # Checks that need no other process, so that every rank fails alike before any waiting.
    # Only rank 0 takes the folder's lock, so only it asks whether someone holds it: another
    # rank could otherwise see rank 0's own lock.
    check_run_dir(out, resume, locked=not distributed.is_main())
    afresh = resume and starts_afresh(out)  # nothing to continue: train its saved configuration from step 0
    if resume:
        skip = cfg.skip_bad_images is True  # the one setting that may be turned on to resume (config.RESUME_FREE)
        cfg = saved_config(out, read_run_config(out, "pretrain", resuming=True)["pretrain"])
        cfg = dataclasses.replace(cfg, skip_bad_images=cfg.skip_bad_images or skip)
    validate_config(cfg)
    timeout = distributed.collective_timeout(dist_timeout)
    world = distributed.world_size()
    per_rank = check_world_size(cfg.batch_size, world)
    requested = resolve_device(cfg.device)
    if cfg.sync_bn and world > 1 and requested.type != "cuda":
        raise ConfigError("--sync-bn needs CUDA GPUs, because PyTorch's SyncBatchNorm does not run on CPU.")
    if cfg.sync_bn and cfg.compile:
        raise ConfigError("--compile cannot be combined with --sync-bn, because torch.compile splits the graph "
                          "at every SyncBatchNorm layer; drop one of them.")
    with distributed.process_group(requested, timeout) as device:
        # Outside hold_run, which records the run's status (or removes an untrained folder) first.
        with distributed.lost_processes_as_error(timeout, lambda: _after_lost_process(out)):
            with hold_run(out, resume, enabled=distributed.is_main(), afresh=afresh, share=distributed.agree):
                return _train(cfg, out, resume and not afresh, progress, device, per_rank)


def _after_lost_process(out: Path) -> str:
    """What to do once another process was lost: only rank 0 knows whether the folder was kept."""
    if distributed.is_main() and not (out / CHECKPOINT).is_file():
        return "nothing had been trained yet, so the run folder was removed: run the same command again"
    return ("the run is marked failed and keeps its last checkpoint: continue it with the same launch, "
            f"`torchrun ... -m nacvae pretrain --out {shlex.quote(str(out))} --resume`")


@dataclass(kw_only=True)
class _Run(RunState):
    """A pretraining run ready to step: besides what every run has, its data and method, the
    learning-rate schedule and NAC's collapse telemetry."""

    cfg: PretrainConfig
    data: PretrainData
    method: Method
    scheduler: Any
    monitor: CollapseMonitor | None
    log_negatives: float | None


def _open_run(cfg: PretrainConfig, out: Path, resume: bool, device: torch.device) -> _Run:
    world, main = distributed.world_size(), distributed.is_main()
    data = distributed.agree(lambda: load_pretrain_data(cfg, device), main_first=True)
    method = distributed.agree(lambda: build_method(cfg, data.image_shape)).to(device)
    if data.images is not None:
        method.attach_dataset(data.images, data.mean, data.std)  # before resuming: a memory bank is in the checkpoint

    steps_per_epoch = len(data) // cfg.batch_size  # the last incomplete batch is dropped
    total_steps, warmup_steps = schedule_steps(cfg, steps_per_epoch)
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = build_optimizer(cfg.optimizer, params, cfg.lr, cfg.weight_decay)
    scheduler = build_scheduler(optimizer, total_steps, warmup_steps, cfg.schedule, cfg.lr_drops)
    # The input normalisation travels with the weights: exports and users need it.
    meta = {**checkpoint_meta(cfg, data.image_shape, method.encoder.feature_dim),
            "mean": list(data.mean), "std": list(data.std), "binarisation": binarisation_meta("sign")}
    ckpt_path = out / CHECKPOINT
    start_step = 0
    if resume:
        ckpt = distributed.agree(lambda: load_checkpoint(
            ckpt_path, kind="pretrain", expect={"arch": cfg.arch, "objective": cfg.objective}))
        start_step = distributed.agree(lambda: restore_training_state(ckpt_path, ckpt, method, optimizer, scheduler))
        del ckpt
    amp, amp_why = _choose_precision(cfg, out, resume, device, method, data.image_shape)
    prepare_method(method, device, amp=amp, compile=cfg.compile, sync_bn=cfg.sync_bn)
    run_config = {
        "kind": "pretrain", "status": "running", "objective": cfg.objective, "dataset": cfg.data,
        "arch": cfg.arch, "code_dim": cfg.code_dim, "image_shape": list(data.image_shape),
        "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "warmup_steps": warmup_steps,
        "device": str(device),
        "input": input_description(data.image_shape, data.mean, data.std),
        "world_size": world, "amp": amp, "amp_decided_by": amp_why, "nacvae_version": __version__,
        "pretrain": cfg.to_dict(),
    }
    negatives = method.num_negatives(cfg.batch_size)
    log_negatives = None if negatives is None else math.log(negatives)
    monitor = CollapseMonitor(warmup_steps) if log_negatives is not None else None
    if resume:  # a collapse seen before the interruption stays on record
        saved_status = read_config(out)
        for key in ("collapsed", "collapsed_at_step", "collapse_escaped_at_step"):
            if key in saved_status:
                run_config[key] = saved_status[key]
        if monitor is not None:
            monitor.collapsed_at = saved_status.get("collapsed_at_step")
            monitor.escaped_at = saved_status.get("collapse_escaped_at_step")
        if data.bad_images is not None:
            data.bad_images.restore(saved_status.get("bad_images"))
    if data.bad_images is not None:
        run_config["bad_images"] = data.bad_images.to_dict()

    def open_run() -> None:
        if not main:
            return
        if resume:
            truncate_metrics(out, "train", start_step)
            truncate_metrics(out, "monitor", start_step)
        write_config(out, run_config)

    distributed.agree(open_run)
    checkpoint = RunCheckpoint(ckpt_path, "pretrain", meta, cfg.to_dict(), method,
                               saved_step=start_step if resume else None, optimizer=optimizer, scheduler=scheduler)
    return _Run(out, optimizer, steps_per_epoch, total_steps, warmup_steps, start_step,
                cfg.checkpoint_every or steps_per_epoch, checkpoint, run_config,
                cfg=cfg, data=data, method=method, scheduler=scheduler, monitor=monitor, log_negatives=log_negatives)


def _views_per_step(cfg: PretrainConfig) -> int:
    """The method's views per step; the shared recipe gives every method two."""
    return cfg.spec.views if cfg.recipe == "own" else 2


def _choose_precision(cfg: PretrainConfig, out: Path, resume: bool, device: torch.device, method: Method,
                      image_shape: tuple[int, int, int]) -> Decision:
    """bf16 or float32 for the encoder (nacvae/precision.py), timed on a copy of it. Under
    torchrun on CPUs the timing is skipped (the processes would have to agree on it) and
    float32 is kept."""
    def probe():
        return encoder_step_probe(method.encoder, image_shape,
                                  probe_images(cfg.batch_size * _views_per_step(cfg), image_shape), device)

    return resolve_amp(device, cfg.amp, None if distributed.is_distributed() else probe,
                       resumed=read_config(out) if resume else None)


def _train(cfg: PretrainConfig, out: Path, resume: bool, progress: bool, device: torch.device, per_rank: int) -> Path:
    rank, main = distributed.rank(), distributed.is_main()
    run = _open_run(cfg, out, resume, device)
    data, method = run.data, run.method
    order = EpochOrder(len(data), cfg.seed, device, run.steps_per_epoch, cfg.batch_size)
    window = Window(1, device)
    views = _views_per_step(cfg)
    watch = open_run_monitor(cfg, data.images is None, data.mean, data.std, device) if main else None
    streamed = None
    if data.stream is not None:
        streamed = _streamed_steps(cfg, data.stream, run.start_step, run.total_steps, run.steps_per_epoch, per_rank,
                                   rank, device, data.bad_images)

    def step_inputs(step: int):
        """(step, its generator, and for in-memory data its rows and views)."""
        gen = torch.Generator(device=device).manual_seed(step_seed(cfg.seed, step, rank=rank))
        if streamed is not None:
            return step, gen, None, None, None
        idx = order.rows(step, rank * per_rank, per_rank)
        return (step, gen, idx, *_views(data.images[idx], data, gen, views))

    todo = steps(run.start_step, run.total_steps)
    # On a CPU the next step's views are made beside this step's training (train/prefetch.py).
    prefetch = PREFETCH and worth_prefetching(device, streamed is not None)
    inputs = Prefetch(step_inputs, todo) if prefetch else map(step_inputs, todo)
    try:  # the status of a run that stops here is recorded by hold_run
        with events_and_bar(out, run.total_steps, run.start_step, resume, writer=main,
                            bar=progress and main) as (writer, bar):
            method.train()
            for step, gen, idx, x1, x2 in inputs:
                if streamed is not None:
                    idx, batch = next(streamed)
                    _tell_bad_images(data.bad_images, bar)
                    x1, x2 = _streamed_views(batch, data, gen)
                    if views == 1:
                        x2 = None
                method.begin_step(idx)
                method.at_step(step, run.total_steps)
                loss, a1 = train_step(method, run.optimizer, x1, x2, gen)
                run.scheduler.step()
                window.add(loss, loss)
                done = step + 1
                if is_log_step(done, run.total_steps, cfg.log_every, run.checkpoint_every):
                    _log(run, window, done, a1, (x1, x1 if x2 is None else x2), writer, bar)
                if cfg.monitor_every and done % cfg.monitor_every == 0 and data.images is not None:
                    monitor_step(watch, method.encoder, done, out, writer)
                bar.update(1)
            if main:
                _record_binarisation(run)
                run.checkpoint.save(run.total_steps, complete=True)
    finally:
        if prefetch:
            inputs.close()
        if streamed is not None:
            streamed.close()  # stops the DataLoader's worker processes
    if main:
        if data.bad_images is not None:
            run.run_config["bad_images"] = data.bad_images.to_dict()
        run.run_config.update(status="complete", finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
        write_config(out, run.run_config)
    distributed.barrier()  # every rank returns once the run folder is complete
    return out


def _log(run: _Run, window: Window, done: int, a1: torch.Tensor, views, writer, bar) -> None:
    """A log step: collectives first, on every rank; then only rank 0 records and saves."""
    cfg, world = run.cfg, distributed.world_size()
    totals = distributed.all_reduce_sum(torch.stack([window.sums[0], (~window.finite).float()])).tolist()
    codes = distributed.gather_no_grad(a1)[0]
    if totals[1] > 0:
        raise run.checkpoint.non_finite(done, "nothing had been saved yet, so nothing of the run is kept "
                                              "(try a lower --lr)")
    record = {
        "event": "train", "step": done, "epoch": done / run.steps_per_epoch,
        "loss": totals[0] / (window.steps * world), "lr": run.optimizer.param_groups[0]["lr"],
        "images_per_s": window.images_per_s(cfg.batch_size), **code_statistics(codes),
    }
    if run.log_negatives is not None:
        record["loss_minus_log2b"] = record["loss"] - run.log_negatives
    bad = run.data.bad_images
    if bad is not None:
        record["bad_images"] = bad.count  # this process's (rank 0's under torchrun)
    if distributed.is_main():
        if bad is not None and run.run_config.get("bad_images") != bad.to_dict():
            run.run_config["bad_images"] = bad.to_dict()
            write_config(run.out, run.run_config)
        for key, value in record.items():
            if key not in ("event", "step"):
                writer.add_scalar(_tensorboard_tag(key), value, done)
        if done % run.checkpoint_every == 0 or done == run.total_steps or window.steps == done - run.start_step:
            # The views the encoder saw (this rank's): at the first log step and checkpoints.
            writer.add_image("images/views", view_pairs(*views, run.data.mean, run.data.std), done)
        append_metrics(run.out, record)
        if run.monitor is not None:
            _watch_collapse(run.monitor, record, run.run_config, cfg, run.warmup_steps, run.out, bar)
        bar.logged(done, loss=f"{record['loss']:.4f}", img_s=f"{record['images_per_s']:.0f}")
        if done % run.checkpoint_every == 0 and done < run.total_steps:
            run.checkpoint.save(done)
    window.reset()


def _tell_bad_images(bad: BadImages | None, bar) -> None:
    """A line on stderr for each of the first bad images met (the rest are only counted)."""
    if bad is None:
        return
    for message in bad.take_news():
        what = message.split("; ", 1)[0]  # the advice after it is for a run that stops
        bar.write(f"{what}; skipped (--skip-bad-images).")


def _tensorboard_tag(key: str) -> str:
    if key.startswith("code_"):
        return "codes/" + key[len("code_"):]
    return f"train/{key}"


def _watch_collapse(monitor: CollapseMonitor, record: dict[str, Any], run_config: dict[str, Any],
                    cfg: PretrainConfig, warmup_steps: int, out: Path, bar: StepProgress) -> None:
    """Warn once (and record it in config.json) when NAC sits in its trivial solution."""
    event = monitor.update(record["step"], record["code_abs_mean"], record["loss_minus_log2b"])
    if event == "collapsed":
        bar.write(collapse_message(monitor.collapsed_at, record["code_abs_mean"], record["loss_minus_log2b"],
                                   warmup_steps, cfg.lr, cfg.options["flip_prob"],
                                   cfg.options["l2_weight"] if cfg.options["momentum"] else None))
        run_config.update(collapsed=True, collapsed_at_step=monitor.collapsed_at)
        write_config(out, run_config)
    elif event == "escaped":
        bar.write(f"NAC's codes have left the trivial solution again at step {monitor.escaped_at}.")
        run_config.update(collapse_escaped_at_step=monitor.escaped_at)
        write_config(out, run_config)


def _two_views(batch: torch.Tensor, data: PretrainData, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return two_views(batch, data.augment, gen)


def _views(batch: torch.Tensor, data: PretrainData, gen: torch.Generator, views: int):
    """(x1, x2) of an in-memory batch; x2 is None for a method that sees one view per step."""
    if views == 1:
        return augment(batch, data.augment, gen), None
    return _two_views(batch, data, gen)


def _record_binarisation(run: _Run) -> None:
    """The binarisation of the finished encoder, into the final checkpoint's meta."""
    cfg = run.cfg
    if cfg.recipe != "own" or cfg.spec.binarisation == "sign":
        return
    data = run.data
    workers = default_workers() if cfg.workers is None else cfg.workers
    means = training_bit_means(run.method.encoder, data.images, data.mean, data.std, stream=data.stream,
                               workers=workers)
    run.checkpoint.meta["binarisation"] = binarisation_meta(cfg.spec.binarisation, means)
    run.run_config["binarisation"] = cfg.spec.binarisation


def _streamed_steps(cfg: PretrainConfig, stream, start_step: int, total_steps: int, steps_per_epoch: int,
                    per_rank: int, rank: int, device: torch.device, bad_images: BadImages | None = None):
    """(indices, uint8 batch on ``device``) of each step from ``start_step`` on, decoded by
    DataLoader workers: the same epoch shuffles and per-rank slices as the in-memory loop, so
    a resumed run reads the same images in the same steps."""
    workers = default_workers() if cfg.workers is None else cfg.workers
    if stream.shards is not None:
        yield from shard_steps(stream, start_step, total_steps, steps_per_epoch, per_rank, cfg.seed, workers, device,
                               bad_images)
        return
    n = len(stream)
    step = start_step
    while step < total_steps:
        epoch = step // steps_per_epoch
        g = torch.Generator().manual_seed(step_seed(cfg.seed, epoch, stream=1))
        perm = torch.randperm(n, generator=g)
        last = min(total_steps, (epoch + 1) * steps_per_epoch)
        starts = [(s - epoch * steps_per_epoch) * cfg.batch_size + rank * per_rank for s in range(step, last)]
        keys = _EpochKeys(perm, epoch, starts, per_rank)
        for first, batch in zip(starts, train_batches(stream, keys, 2, cfg.seed, workers, device, bad_images)):
            yield perm[first:first + per_rank].to(device), batch
        step = last


class _EpochKeys:
    """The (epoch, index) keys of each step of an epoch, made as the loader asks for them
    (an ImageNet epoch's list would hold 1.28 million tuples)."""

    def __init__(self, perm: torch.Tensor, epoch: int, starts: list[int], size: int) -> None:
        self.perm, self.epoch, self.starts, self.size = perm, epoch, starts, size

    def __len__(self) -> int:
        return len(self.starts)

    def __iter__(self):
        for first in self.starts:
            yield [(self.epoch, j) for j in self.perm[first:first + self.size].tolist()]


def _streamed_views(batch: torch.Tensor, data: PretrainData, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two augmented views of a streamed batch: [B, 2, C, S, S] already holds each image's two
    random-resized crops; [B, C, S, S] (a streamed folder) is augmented as in memory."""
    if batch.dim() == 4:
        return _two_views(batch, data, gen)
    b = batch.shape[0]
    views = augment(batch.transpose(0, 1).reshape(2 * b, *batch.shape[2:]), data.augment, gen)
    return views[:b], views[b:]
