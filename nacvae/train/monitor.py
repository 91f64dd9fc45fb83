"""Online monitoring of pretraining: how well the current encoder's features classify and
its codes retrieve, every ``--monitor-every`` steps, on small fixed labelled subsets.

k-NN top-1 (``nacvae.eval.knn``, InsDis's protocol: k = 200, exp(s / 0.07) votes) of up to
``QUERY_IMAGES`` test images against up to ``MEMORY_IMAGES`` train images, and Hamming mAP
(``nacvae.eval.retrieval``) of the codes sgn(a) on a retrieval split
(``nacvae.data.splits``) of those images pooled. The subsets are drawn once by a generator
of their own seeded from the run's seed, so every check of a run, and a resumed run, sees
the same images.

A check leaves training untouched: the encoder runs in eval mode under ``no_grad`` (batch
norm statistics are not updated) and is put back in train mode, and no random generator of
the training loop, nor torch's global one, is drawn from. The same run with and without
monitoring therefore saves bit-identical weights (tests/train/test_monitor.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nacvae import distributed
from nacvae.data.augment import normalize
from nacvae.data.catalog import open_dataset
from nacvae.data.splits import retrieval_split
from nacvae.data.stream import StreamedImages
from nacvae.errors import DataError, NacvaeError
from nacvae.eval.knn import DEFAULT_K, DEFAULT_TEMPERATURE, knn_accuracy
from nacvae.eval.retrieval import mean_average_precision
from nacvae.models.modes import eval_mode
from nacvae.runs import append_metrics
from nacvae.seeds import step_seed

__all__ = ["MEMORY_IMAGES", "QUERY_IMAGES", "OnlineMonitor", "monitor_step", "open_monitor", "open_run_monitor"]

# Sized so that a check costs a few training steps' time (experiments/bench_monitor.py).
MEMORY_IMAGES = 2000
QUERY_IMAGES = 1000
BATCH_SIZE = 500
MONITOR_STREAM = 6  # its seeds' stream (nacvae.seeds): apart from every training draw


class OnlineMonitor:
    """k-NN top-1 and mAP of an encoder on fixed subsets of a labelled in-memory dataset."""

    def __init__(self, memory: torch.Tensor, memory_labels: torch.Tensor, queries: torch.Tensor,
                 query_labels: torch.Tensor, mean, std, seed: int, device: torch.device) -> None:
        self.mean, self.std, self.device = mean, std, device
        self.images = torch.cat([memory, queries]).to(device)  # uint8: the pool, memory first
        self.labels = torch.cat([memory_labels, query_labels]).long()
        self.num_memory = len(memory)
        self.num_classes = int(self.labels.max()) + 1
        # The retrieval split of the pool: 10% of the smallest class per class as queries,
        # as `nacvae eval retrieval` draws them for small datasets.
        smallest = int(torch.unique(self.labels, return_counts=True)[1].min())
        self.split = retrieval_split(self.labels, max(1, smallest // 10), None, seed)

    @torch.no_grad()
    def measure(self, encoder: nn.Module) -> dict[str, float]:
        """{"knn_top1", "map"} of ``encoder`` (a PretrainEncoder), left in the mode it was in."""
        with eval_mode(encoder):
            h, codes = [], []
            for s in range(0, len(self.images), BATCH_SIZE):
                x = normalize(self.images[s:s + BATCH_SIZE], self.mean, self.std)
                features = encoder.backbone(x)
                h.append(torch.flatten(features, 1).float())
                codes.append((encoder.projector(features) > 0).cpu())
        h, codes = torch.cat(h), torch.cat(codes)
        m = self.num_memory
        knn = knn_accuracy(h[m:], self.labels[m:].to(h.device), h[:m], self.labels[:m].to(h.device),
                           self.num_classes, k=DEFAULT_K, temperature=DEFAULT_TEMPERATURE)
        q, g = self.split["query"], self.split["gallery"]
        value = mean_average_precision(codes[q], self.labels[q], codes[g], self.labels[g], backend="numpy")
        return {"knn_top1": knn["top1"], "map": value}

    def describe(self) -> dict[str, Any]:
        return {"memory": self.num_memory, "queries": len(self.images) - self.num_memory,
                "retrieval_queries": len(self.split["query"]), "retrieval_gallery": len(self.split["gallery"])}


def _subset(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``size`` of ``n`` rows (all when fewer), in dataset order."""
    if n <= size:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:size].sort().values


def open_monitor(cfg, mean, std, device: torch.device) -> tuple[OnlineMonitor | None, str | None]:
    """(the monitor of ``cfg``'s dataset, None) or (None, a one-line note why there is none)."""
    name = cfg.data
    try:
        train = open_dataset(name, "train", cfg.data_dir, download=cfg.download, image_size=cfg.image_size)
        test = open_dataset(name, "test", cfg.data_dir, download=cfg.download, image_size=cfg.image_size)
    except DataError as exc:
        return None, f"No online monitoring: {str(exc).rstrip('.')}."
    if isinstance(train, StreamedImages) or isinstance(test, StreamedImages):
        return None, f"No online monitoring: {name} is read batch by batch (use `nacvae eval knn` on checkpoints)."
    if train.labels is None or test.labels is None or len(torch.unique(train.labels)) < 2:
        return None, f"No online monitoring: {name} has no class labels to score k-NN and retrieval with."
    # A generator of its own (CPU, seeded from the run's seed): no training draw is consumed.
    g = torch.Generator().manual_seed(step_seed(cfg.seed, 0, stream=MONITOR_STREAM))
    mem = _subset(len(train.images), MEMORY_IMAGES, g)
    qry = _subset(len(test.images), QUERY_IMAGES, g)
    split_seed = int(torch.randint(2**31 - 1, (), generator=g))
    try:
        monitor = OnlineMonitor(train.images[mem], train.labels[mem], test.images[qry], test.labels[qry], mean, std,
                                split_seed, device)
    except NacvaeError as exc:  # a split the subset cannot hold (a class of one image): monitoring is optional
        return None, f"No online monitoring: {str(exc).rstrip('.')}."
    return monitor, None


def open_run_monitor(cfg, streamed: bool, mean, std, device: torch.device) -> OnlineMonitor | None:
    """Rank 0's monitor of a pretraining run, or None (off, or a one-line note on stderr why not)."""
    if not cfg.monitor_every:
        return None
    watch, note = (None, f"No online monitoring: {cfg.data} is read batch by batch (use `nacvae eval knn` on "
                         "checkpoints).") if streamed else open_monitor(cfg, mean, std, device)
    if note is not None:
        print(note, file=sys.stderr)
    return watch


def monitor_step(watch: OnlineMonitor | None, encoder: nn.Module, done: int, out: Path, writer) -> None:
    """A check at step ``done``: rank 0 scores the encoder (``watch``; None elsewhere) and
    records it while the other ranks wait at a barrier, so that all stay in step."""
    if watch is not None:
        record = {"event": "monitor", "step": done, **watch.measure(encoder)}
        append_metrics(out, record)
        writer.add_scalar("monitor/knn_top1", record["knn_top1"], done)
        writer.add_scalar("monitor/map", record["map"], done)
    distributed.barrier()
