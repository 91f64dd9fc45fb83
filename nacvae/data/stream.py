"""Streamed datasets: image files decoded batch by batch, never all held in memory.

A ``StreamedImages`` is a list of files with their labels. DataLoader worker processes
open and decode the files of each batch and bring every image to a square of ``size``
pixels; the batched on-device augmentation (``nacvae.data.augment``) then does the rest,
as it does for in-memory data. Two ways of making the square:

- ``crop="imagenet"`` (ImageNet, FLICKR-25K, WebDataset shards): the paper's protocol.
  Training views are random-resized crops of the whole image (area 8-100%, aspect ratio
  3/4-4/3, torchvision's sampling rule), one per view, so two views of one image are two
  independent crops of the original; evaluation images are resized so that the shorter
  side is ``size * 256 / 224`` and centre-cropped to ``size``.
- ``crop="resize"`` (large image folders): each image is resized to ``size x size``
  exactly as the in-memory folder reader does, so both paths see the same pixels.

Every random draw of a worker comes from a generator seeded by (seed, epoch, image
index), so the images of a step do not depend on the number of workers.

On a CUDA device the JPEG files are decoded on the GPU instead
(``torchvision.io.decode_jpeg(device="cuda")``): workers then only read the file bytes
and draw the crop boxes, and the main process decodes the batch and crops and resizes
each image there. Other formats are decoded by the workers as usual.

A file that cannot be read as an image stops the run with one sentence naming it: the
workers hand such a failure back as a value (``Unreadable``), and the main process raises
it, instead of DataLoader's wrapped traceback. With a ``BadImages`` record given
(``--skip-bad-images``) the image of key (epoch, index) is instead the next readable file
of the list (index + 1, index + 2, ..., wrapping around), cut with the bad image's own
random draws: batch shapes, the step seeds and a resumed run stay exactly as they were,
and the record counts the bad files and names the first few.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from nacvae.data.bad_images import SKIP_HINT, BadImages, Unreadable, settle, worker_errors
from nacvae.data.crops import centre_box, random_resized_box, resize_centre_crop
from nacvae.errors import DataError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "StreamedImages",
    "default_workers",
    "eval_batches",
    "stream_stats",
    "train_batches",
]

# The usual ImageNet channel statistics in [0, 1] units (also used for FLICKR-25K).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Images whose channel statistics are computed for a streamed folder (a seeded sample).
STATS_SAMPLE = 10_000
_JPEG_MAGIC = b"\xff\xd8"
@dataclass
class StreamedImages:
    """One split of a dataset read from files batch by batch.

    ``labels`` is None (unlabelled), int64 class ids [N], or uint8 multi-hot [N, C]
    (multi-label data, where ``classes`` names the C labels).
    """

    files: Sequence[str]
    labels: torch.Tensor | None
    classes: list[str] | None
    name: str
    size: int
    channels: int = 3
    crop: str = "imagenet"
    shards: list[str] | None = field(default=None, repr=False)  # WebDataset shard files instead of files
    count: int | None = None  # the images of the shards

    def __post_init__(self) -> None:
        if self.crop not in ("imagenet", "resize"):
            raise ValueError(f"unknown crop {self.crop!r}")
        if self.labels is not None and self.labels.shape[0] != len(self.files):
            raise ValueError("there must be one label (row) per file")
        if (self.shards is None) != (self.count is None):
            raise ValueError("shards and their image count go together")

    @property
    def multi_label(self) -> bool:
        return self.labels is not None and self.labels.dim() == 2

    @property
    def num_classes(self) -> int | None:
        return None if self.classes is None else len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    def __len__(self) -> int:
        return self.count if self.shards is not None else len(self.files)

    def subset(self, indices) -> "StreamedImages":
        """The images ``indices`` (a sequence or tensor of positions), in that order."""
        idx = [int(i) for i in indices]
        labels = None if self.labels is None else self.labels[torch.as_tensor(idx, dtype=torch.long)]
        return StreamedImages([self.files[i] for i in idx], labels, self.classes, self.name, self.size,
                              self.channels, self.crop)


def default_workers() -> int:
    """DataLoader workers when none are asked for: this process's share of the cores (torchrun
    starts ``LOCAL_WORLD_SIZE`` processes per machine) but one, at most 8, at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 2
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    return max(1, min(8, cores // local - 1))


# ---------------------------------------------------------------------- decoding


def _open(path: str, channels: int):
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("L" if channels == 1 else "RGB")
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds of errors
        raise DataError(f"{path} could not be read as an image ({type(exc).__name__}); {SKIP_HINT}.") from None


def _pil_to_uint8(image) -> torch.Tensor:
    a = np.asarray(image, dtype=np.uint8)
    if a.ndim == 2:
        return torch.from_numpy(a.copy()).unsqueeze(0)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).contiguous()


def _crop_resize_pil(image, box, size: int):
    from PIL import Image

    top, left, h, w = box
    return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))


def decode_item(image, data_crop: str, size: int, views: int, rng: np.random.Generator | None) -> torch.Tensor:
    """One decoded PIL image as uint8: [views, C, size, size] for training (``rng`` given),
    [C, size, size] for evaluation."""
    from PIL import Image

    if data_crop == "resize":
        return _pil_to_uint8(image.resize((size, size), Image.Resampling.BILINEAR))
    if rng is None:
        return _pil_to_uint8(resize_centre_crop(image, size))
    boxes = [random_resized_box(image.height, image.width, rng) for _ in range(views)]
    return torch.stack([_pil_to_uint8(_crop_resize_pil(image, b, size)) for b in boxes])


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one image's random crops in one epoch."""
    return np.random.default_rng([int(seed), int(epoch), int(index), 0x5EED])


class _Files(torch.utils.data.Dataset):
    """Items of a DataLoader: a key (epoch, index) for training, an index for evaluation.

    An item is (image, unreadable images met): the image is None when one was met and
    ``skip`` is off, else the next readable file's in its place."""

    def __init__(self, data: StreamedImages, views: int, seed: int, train: bool, encoded: bool,
                 skip: bool = False) -> None:
        # File names as one numpy byte array: forked workers then share it instead of each
        # gradually copying the pages of a million Python strings (reference counts change).
        self.files = np.array([os.fsencode(f) for f in data.files])
        self.channels, self.size, self.crop = data.channels, data.size, data.crop
        self.views, self.seed, self.train, self.encoded, self.skip = views, seed, train, encoded, skip

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key):
        epoch, index = key if self.train else (0, key)
        return self._item(epoch, index, 0)

    def _item(self, epoch: int, index: int, first: int):
        n, bad = len(self.files), []
        for k in range(first, n if self.skip else first + 1):
            path = os.fsdecode(self.files[(index + k) % n])
            # The bad image's own draws: a replacement changes no other image's crops.
            rng = item_rng(self.seed, epoch, index) if self.train and self.crop == "imagenet" else None
            try:
                image = self._decode(path, rng)
            except DataError as exc:
                bad.append(Unreadable(path, str(exc)))
                continue
            if isinstance(image, tuple):  # GPU decoding: what a failure there needs to find a replacement
                image = (*image, path, (epoch, index, k))
            return image, bad
        if self.skip:
            raise DataError(f"None of the {n} images can be read (the first that cannot is {bad[0].name}); "
                            "check the data.")
        return None, bad

    def _decode(self, path: str, rng):
        if self.encoded:
            raw = _read_bytes(path)
            if raw[:2] == _JPEG_MAGIC:
                return _encoded_item(raw, path, self.size, self.views, rng)
        return decode_item(_open(path, self.channels), self.crop, self.size, self.views, rng)

    def replacement(self, epoch: int, index: int, tried: int):
        """(image, unreadable images met) on the CPU for the key (epoch, ``index``) when the
        device could not decode the file ``tried`` places on: the next readable one's."""
        encoded, self.encoded = self.encoded, False
        try:
            return self._item(epoch, index, tried + 1)
        finally:
            self.encoded = encoded


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise DataError(f"{path} cannot be read ({exc.strerror or exc}); check its permissions, or pass "
                        "--skip-bad-images to skip such images.") from None


def _encoded_item(raw: bytes, path: str, size: int, views: int, rng):
    """What a worker hands over for GPU decoding: the bytes and the crop boxes."""
    from PIL import Image
    import io

    try:
        with Image.open(io.BytesIO(raw)) as im:  # reads the header only
            width, height = im.size
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path} could not be read as an image ({type(exc).__name__}); {SKIP_HINT}.") from None
    if rng is None:
        boxes = [centre_box(height, width, size)]
    else:
        boxes = [random_resized_box(height, width, rng) for _ in range(views)]
    return ("jpeg", torch.frombuffer(bytearray(raw), dtype=torch.uint8), torch.tensor(boxes))


def _collate(items):
    """(images, unreadable images met): images None when one of them could not be read."""
    bad = [u for _, found in items for u in found]
    images = [x for x, _ in items]
    if any(x is None for x in images):
        return None, bad
    if all(isinstance(x, torch.Tensor) for x in images):
        return torch.stack(images), bad
    return images, bad  # GPU decoding: finished in the main process


def gpu_decoding(device: torch.device) -> bool:
    """Whether JPEGs are decoded on ``device``: a CUDA device and a torchvision that can."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    try:
        from torchvision.io import decode_jpeg  # noqa: F401
    except ImportError:
        return False
    return os.environ.get("NACVAE_GPU_DECODE", "1") != "0"


def _finish_on_device(batch, size: int, channels: int, train: bool, device: torch.device, dataset: _Files,
                      record: BadImages | None) -> torch.Tensor:
    """Decode a GPU-decoding batch on ``device`` and crop-resize each image to ``size``; an
    image neither the device nor PIL can decode is replaced as in a worker (``record``) or
    stops the run."""
    from torchvision.io import ImageReadMode, decode_jpeg

    jpegs = [i for i, x in enumerate(batch) if isinstance(x, tuple)]
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    try:
        decoded = decode_jpeg([batch[i][1] for i in jpegs], mode=mode, device=device) if jpegs else []
    except RuntimeError:  # one file the GPU decoder refuses (CMYK, progressive, damaged): one by one
        decoded = [_decode_one(batch[i][1], mode, channels, device) for i in jpegs]
    for k, i in enumerate(jpegs):
        if isinstance(decoded[k], str):
            path, (epoch, index, tried) = batch[i][3], batch[i][4]
            settle([Unreadable(path, f"{path} could not be decoded ({decoded[k]}); {SKIP_HINT}.")], record)
            image, more = dataset.replacement(epoch, index, tried)
            settle(more, record)
            batch[i] = image
    out = []
    pos = {i: k for k, i in enumerate(jpegs)}
    for i, item in enumerate(batch):
        if not isinstance(item, tuple):
            out.append(item.to(device, non_blocking=True))
            continue
        image = decoded[pos[i]]
        crops = []
        for top, left, h, w in item[2].tolist():
            x = image[None, :, top:top + h, left:left + w].float()
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            crops.append(x.round_().clamp_(0, 255).to(torch.uint8)[0])
        out.append(torch.stack(crops) if train else crops[0])
    return torch.stack(out)


def _decode_one(raw: torch.Tensor, mode, channels: int, device: torch.device) -> torch.Tensor | str:
    """One JPEG on ``device``, through PIL on the CPU when the device's decoder refuses it;
    the name of PIL's error when neither can."""
    import io

    from PIL import Image
    from torchvision.io import decode_jpeg

    try:
        return decode_jpeg(raw, mode=mode, device=device)
    except RuntimeError:
        try:
            with Image.open(io.BytesIO(raw.numpy().tobytes())) as im:
                image = im.convert("L" if channels == 1 else "RGB")
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds of errors
            return type(exc).__name__
        return _pil_to_uint8(image).to(device)


def _loader(dataset, batches, workers: int, device: torch.device):
    workers = int(workers)
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, num_workers=workers, collate_fn=_collate,
        pin_memory=device.type == "cuda", prefetch_factor=4 if workers > 0 else None,
        persistent_workers=False)


def _batches(dataset: _Files, batches, workers: int, data: StreamedImages, train: bool, device: torch.device,
             record: BadImages | None) -> Iterator[torch.Tensor]:
    for images, bad in worker_errors(_loader(dataset, batches, workers, device)):
        settle(bad, record)
        if isinstance(images, list):
            yield _finish_on_device(images, data.size, data.channels, train, device, dataset, record)
        else:
            yield images.to(device, non_blocking=True)


def train_batches(data: StreamedImages, keys: Sequence[Sequence[tuple[int, int]]], views: int, seed: int,
                  workers: int, device: torch.device, bad_images: BadImages | None = None) -> Iterator[torch.Tensor]:
    """uint8 training batches on ``device``, one per list of (epoch, index) keys, in order;
    with ``bad_images`` an unreadable image is replaced and recorded there (module docstring).

    With ``crop="imagenet"`` a batch is [B, views, C, size, size] (independent random-resized
    crops); with ``crop="resize"`` it is [B, C, size, size] and ``views`` is unused.
    """
    encoded = data.crop == "imagenet" and gpu_decoding(device)
    dataset = _Files(data, views, seed, train=True, encoded=encoded, skip=bad_images is not None)
    yield from _batches(dataset, keys, workers, data, True, device, bad_images)


def eval_batches(data: StreamedImages, batch_size: int, workers: int, device: torch.device,
                 indices: Sequence[int] | None = None, bad_images: BadImages | None = None) -> Iterator[torch.Tensor]:
    """uint8 evaluation images [B, C, size, size] on ``device``, in order (all, or ``indices``);
    with ``bad_images`` an unreadable image is replaced and recorded there."""
    order = list(range(len(data))) if indices is None else [int(i) for i in indices]
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    encoded = data.crop == "imagenet" and gpu_decoding(device)
    dataset = _Files(data, 1, 0, train=False, encoded=encoded, skip=bad_images is not None)
    yield from _batches(dataset, batches, workers, data, False, device, bad_images)


def stream_stats(data: StreamedImages, workers: int, batch_size: int = 256, sample: int = STATS_SAMPLE,
                 bad_images: BadImages | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) in [0, 1] units over the evaluation images of ``data``
    (all of them, or a seeded sample of ``sample`` when there are more)."""
    n = len(data)
    indices = None
    if n > sample:
        indices = sorted(np.random.default_rng(0).choice(n, size=sample, replace=False).tolist())
    c = data.channels
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    for batch in eval_batches(data, batch_size, workers, torch.device("cpu"), indices, bad_images):
        x = batch.to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        count += x.numel() // c
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
