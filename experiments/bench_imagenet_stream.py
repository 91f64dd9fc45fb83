"""Images per second of the streamed ImageNet path against torchvision's ImageFolder + PIL.

Both pipelines read the same ImageNet-layout folder (``DIR/train/<wnid>/*.JPEG``) with a
DataLoader of ``--workers`` worker processes and batches of ``--batch-size`` images, each
image seen in two views, and feed the same ResNet-18 (torchvision stem, 224 px) NAC
training step (forward, backward, LARS update):

nacvae       ``nacvae pretrain --data imagenet``'s path: workers decode each JPEG with PIL
             and cut two random-resized 224-px crops (uint8); flip, colour jitter and
             grayscale run batched on the device (``nacvae.data.augment``).
torchvision  ``torchvision.datasets.ImageFolder`` whose workers apply the usual per-image
             PIL transforms twice: RandomResizedCrop(224), RandomHorizontalFlip,
             ColorJitter(0.4, 0.4, 0.4, 0.1) with p = 0.8, RandomGrayscale(p = 0.2),
             ToTensor, Normalize.

Each pipeline is timed in one run, alternating: data only (the loader's batches are
drawn and, for nacvae, augmented on the device; no model), and full training steps; the
nacvae loader is also timed without its on-device augmentation ("workers only": decoding
and the two crops), since on a CPU that augmentation runs in the main process. A fresh loader
is started for every measurement and its first ``--warmup`` batches are not timed.
``--make N`` first writes N random JPEGs of assorted sizes (about ImageNet's 400x350
average) into DIR, in 10 classes.

    python experiments/bench_imagenet_stream.py /tmp/bench-in --make 640
    python experiments/bench_imagenet_stream.py /data/imagenet --batches 50 --steps 20 --device cuda
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nacvae.data import augment  # noqa: E402
from nacvae.data.catalog import open_dataset  # noqa: E402
from nacvae.data.stream import IMAGENET_MEAN, IMAGENET_STD, train_batches  # noqa: E402


def make_folder(root: Path, n: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(n):
        w, h = int(rng.integers(250, 500)), int(rng.integers(200, 450))
        # Smooth random images: JPEG sizes and decode costs closer to photographs than noise.
        small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
        path = root / "train" / f"n{k % 10:08d}" / f"{k}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=90)
    (root / "val").mkdir(exist_ok=True)


def torchvision_loader(root: Path, batch_size: int, workers: int, device: torch.device):
    from torchvision import datasets, transforms as T

    one = T.Compose([
        T.RandomResizedCrop(224), T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2),
        T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    two = lambda image: torch.stack((one(image), one(image)))  # noqa: E731
    dataset = datasets.ImageFolder(str(root / "train"), transform=two)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True, prefetch_factor=4 if workers else None,
                                         pin_memory=device.type == "cuda")
    for views, _ in loader:
        views = views.to(device, non_blocking=True)
        yield views[:, 0], views[:, 1]


def nacvae_loader(root: Path, batch_size: int, workers: int, cfg, device: torch.device, device_augment: bool = True):
    data = open_dataset("imagenet", "train", root)
    n = len(data)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    keys = [[(0, i) for i in perm[s:s + batch_size]] for s in range(0, n - batch_size + 1, batch_size)]
    gen = torch.Generator(device=device).manual_seed(0)
    # On a CUDA device the JPEGs are decoded there (torchvision.io.decode_jpeg), as in nacvae pretrain.
    for batch in train_batches(data, keys, 2, 0, workers, device):
        if not device_augment:
            yield batch[:, 0], batch[:, 1]
            continue
        b = batch.shape[0]
        views = augment(batch.transpose(0, 1).reshape(2 * b, *batch.shape[2:]), cfg, gen)
        yield views[:b], views[b:]


def timed(pairs, count: int, warmup: int, step=None) -> float:
    """Images per second over ``count`` batches after ``warmup`` untimed ones."""
    it = iter(pairs)
    for _ in range(warmup):
        x1, x2 = next(it)
        if step is not None:
            step(x1, x2)
    start = time.perf_counter()
    images = 0
    for _ in range(count):
        x1, x2 = next(it)
        if step is not None:
            step(x1, x2)
        images += len(x1)
    if x1.is_cuda:  # the last batch's work is queued, not done
        torch.cuda.synchronize(x1.device)
    seconds = time.perf_counter() - start
    del it
    return images / seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--make", type=int, default=0, help="write this many random JPEGs into FOLDER first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=8, help="timed batches, data only [8]")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps [3]")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (JPEGs then decoded on the GPU) [cpu]")
    args = parser.parse_args(argv)
    if args.make:
        make_folder(args.folder, args.make)

    from nacvae.data import AugmentConfig
    from nacvae.train.config import resolve_config
    from nacvae.train.methods import build_method, prepare_method
    from nacvae.train.optim import build_optimizer
    from nacvae.train.pretrain import train_step

    cfg = AugmentConfig(size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_scale=(1.0, 1.0),
                        crop_ratio=(1.0, 1.0))
    from nacvae.precision import resolve_amp

    device = torch.device(args.device)
    run = resolve_config("imagenet", arch="resnet18", batch_size=args.batch_size, device=args.device)
    method = build_method(run, (3, 224, 224)).to(device)
    prepare_method(method, device, amp=resolve_amp(device, None).amp)
    method.train()
    optimizer = build_optimizer("lars", [p for p in method.parameters() if p.requires_grad], 0.3, 1e-6)
    gen = torch.Generator(device=device).manual_seed(0)

    def step(x1, x2):
        train_step(method, optimizer, x1, x2, gen)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    print(f"# {len(open_dataset('imagenet', 'train', args.folder))} images in {args.folder}, batch {args.batch_size}, "
          f"{args.workers} workers, torch threads {torch.get_num_threads()}, cores {os.cpu_count()}, "
          f"device {device}")
    pipelines = {
        "nacvae": lambda: nacvae_loader(args.folder, args.batch_size, args.workers, cfg, device),
        "torchvision": lambda: torchvision_loader(args.folder, args.batch_size, args.workers, device),
    }
    rate = timed(nacvae_loader(args.folder, args.batch_size, args.workers, cfg, device, False), args.batches,
                 args.warmup)
    print(f"{'nacvae':12s} {'workers only':14s} {rate:8.1f} images/s ({args.batches} batches timed)", flush=True)
    for what, count, fn in (("data only", args.batches, None), ("training step", args.steps, step)):
        for name, make in pipelines.items():
            rate = timed(make(), count, args.warmup, fn)
            print(f"{name:12s} {what:14s} {rate:8.1f} images/s ({count} batches timed)", flush=True)


if __name__ == "__main__":
    main()
