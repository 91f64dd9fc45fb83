"""WebDataset tar shards (``--data webdataset:URL_PATTERN``), for training on many machines.

``URL_PATTERN`` names local tar files with a brace pattern, as in
``/data/imagenet-train-{000000..001281}.tar``; ``experiments/make_shards.py`` writes them
from an image folder. Each sample is one image file (``.jpg``, ``.jpeg``, ``.png`` or
``.webp``, optionally with a ``.cls`` class number, which pretraining does not use).

Every epoch the shard list is shuffled with a generator seeded by (seed, epoch); process
``r`` of ``W`` (torchrun) takes every W-th shard from position r, and each of its DataLoader
workers every k-th of those (``webdataset.split_by_worker``); samples are shuffled in a
buffer of 1,000 within a worker. The epoch length is the sample count over all shards
(read from the tar headers); a process whose shards run out early starts the next shard
order, so every process takes the same number of steps. Training views are random-resized
crops at 224 px, as for ImageNet, decoded by the workers on the CPU. A resumed run starts
the interrupted epoch's shard order again rather than replaying it exactly.

A sample whose image is missing or cannot be read stops the run with one sentence naming
it; with ``--skip-bad-images`` it is left out and the next samples of the worker's stream
fill the batch (a shard has no index to take a replacement from), and it is recorded.
"""

from __future__ import annotations

import io
import random
import tarfile
import zlib

import torch

from nacvae.data.bad_images import BadImages, Unreadable, settle, worker_errors
from nacvae.data.stream import StreamedImages, decode_item, item_rng
from nacvae.errors import ConfigError, DataError

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
SHUFFLE_BUFFER = 1000


def _require_webdataset() -> None:
    try:
        import webdataset  # noqa: F401
    except ImportError:
        raise ConfigError("Reading WebDataset shards needs the webdataset package; install it with "
                          "pip install 'nacvae[shards]'.") from None


def expand_pattern(pattern: str) -> list[str]:
    _require_webdataset()
    from braceexpand import braceexpand

    if not pattern:
        raise ConfigError("A WebDataset source needs shards, as in 'webdataset:/data/train-{000000..000099}.tar'.")
    urls = [u[len("file:"):] if u.startswith("file:") else u for u in braceexpand(pattern)]
    remote = [u for u in urls if "://" in u or u.startswith("pipe:")]
    if remote:
        raise ConfigError(f"WebDataset shards must be local files, and {remote[0]} is not; copy the shards to a "
                          "local or network file system.")
    return urls


def _count_samples(path: str) -> int:
    """Samples (distinct keys with an image member) of one tar shard, from its headers."""
    keys = set()
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                key, _, ext = name.partition(".")
                if member.isfile() and ext.lower() in IMAGE_KEYS:
                    keys.add(member.name.rsplit(".", len(ext.split(".")))[0])
    except FileNotFoundError:
        raise DataError(f"The shard {path} does not exist; check the pattern after 'webdataset:'.") from None
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"{path} could not be read as a tar shard ({exc}); write it again.") from None
    return len(keys)


def load_shards(pattern: str, split: str, size: int = 224) -> StreamedImages:
    if split != "train":
        raise ConfigError("Shards are for pretraining only; evaluate on the images they were made from "
                          "(--data imagenet or --data folder:PATH).")
    urls = expand_pattern(pattern)
    count = sum(_count_samples(u) for u in urls)
    if count == 0:
        raise DataError(f"The shards {pattern} hold no images ({', '.join(IMAGE_KEYS)}); write them with "
                        "experiments/make_shards.py.")
    return StreamedImages([], None, None, "webdataset:" + pattern, size, shards=urls, count=count)


class _Decode:
    """Sample dict -> two random-resized crops [2, C, S, S] (picklable for the workers)."""

    def __init__(self, size: int, seed: int, epoch: int) -> None:
        self.size, self.seed, self.epoch = size, seed, epoch

    def __call__(self, sample: dict) -> torch.Tensor | Unreadable:
        """The crops, or the sample's name and why it has none (handed back, not raised, so
        that the main process can raise or record it)."""
        from PIL import Image

        key = sample["__key__"]
        name = f"{sample.get('__url__')}:{key}"
        raw = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
        if raw is None:
            return Unreadable(name, f"The sample {key} of {sample.get('__url__')} has no image "
                                    f"({', '.join(IMAGE_KEYS)}); write the shard again, or pass --skip-bad-images "
                                    "to skip such samples.")
        try:
            with Image.open(io.BytesIO(raw)) as im:
                image = im.convert("RGB")
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds of errors
            return Unreadable(name, f"The sample {key} of {sample.get('__url__')} could not be read as an image "
                                    f"({type(exc).__name__}); write the shard again, or pass --skip-bad-images "
                                    "to skip such samples.")
        rng = item_rng(self.seed, self.epoch, zlib.crc32(f"{sample.get('__url__')}/{key}".encode()))
        return decode_item(image, "imagenet", self.size, 2, rng)


class _Batch:
    """A worker's samples -> (batch [size, 2, C, S, S] or None, unreadable samples met):
    batched in the worker, so that a left-out sample's place is taken by the next one."""

    def __init__(self, size: int, skip: bool) -> None:
        self.size, self.skip = size, skip

    def __call__(self, samples):
        images, bad = [], []
        for x in samples:
            if isinstance(x, Unreadable):
                bad.append(x)
                if not self.skip:
                    yield None, bad
                    return
                continue
            images.append(x)
            if len(images) == self.size:
                yield torch.stack(images), bad
                images, bad = [], []
        if bad:  # the worker's last, incomplete batch is dropped; its bad samples are still told
            yield None, bad


def _epoch_loader(stream: StreamedImages, epoch: int, per_rank: int, seed: int, workers: int, rank: int,
                  world: int, device: torch.device, skip: bool = False):
    import webdataset as wds

    urls = list(stream.shards)
    random.Random(f"{seed}-{epoch}").shuffle(urls)
    mine = urls[rank::world]
    if not mine:
        raise ConfigError(f"{len(urls)} shards cannot feed {world} processes; write at least one shard per process.")
    dataset = (wds.WebDataset(mine, shardshuffle=False, nodesplitter=None, workersplitter=wds.split_by_worker,
                              empty_check=False)
               .shuffle(SHUFFLE_BUFFER, rng=random.Random(f"{seed}-{epoch}-{rank}"))
               .map(_Decode(stream.size, seed, epoch))
               .compose(_Batch(per_rank, skip)))
    return torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers,
                                       pin_memory=device.type == "cuda")


def shard_steps(stream: StreamedImages, start_step: int, total_steps: int, steps_per_epoch: int, per_rank: int,
                seed: int, workers: int, device: torch.device, bad_images: BadImages | None = None):
    """(None, uint8 batch [per_rank, 2, C, S, S] on ``device``) for each step from ``start_step``
    on; with ``bad_images`` an unreadable sample is left out and recorded there."""
    from nacvae import distributed

    rank, world = distributed.rank(), distributed.world_size()
    epoch, remaining = start_step // steps_per_epoch, total_steps - start_step
    while remaining > 0:
        produced = 0
        loader = _epoch_loader(stream, epoch, per_rank, seed, workers, rank, world, device, bad_images is not None)
        for batch, bad in worker_errors(loader):
            settle(bad, bad_images)
            if batch is None:
                continue
            yield None, batch.to(device, non_blocking=True)
            produced += 1
            remaining -= 1
            if remaining == 0:
                return
        if produced == 0:
            raise DataError(f"This process's shards of {stream.name} hold fewer than {per_rank} images, one "
                            "batch; write more images per shard or use a smaller --batch-size.")
        epoch += 1
