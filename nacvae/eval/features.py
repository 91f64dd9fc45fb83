"""The evaluation data and the frozen encoder's outputs on it, shared by every evaluator.

Every downstream evaluation (``linear_eval``, ``retrieval_eval``, ``codes_eval``) opens a
split of a dataset with ``open_split``, normalises it with the dataset's channel
statistics (``normalization_stats``: the eval transform, as in pretraining), and computes
features or codes with the encoder frozen in eval mode (batch-norm statistics included),
batched and under ``torch.no_grad``: in memory with ``image_codes``, or decoded batch by
batch by worker processes with ``streamed_outputs``. The ``check_*`` helpers turn a bad
option or an encoder that does not fit the data into a ``ConfigError`` or
``CheckpointError`` before any work is done.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from nacvae.checks import check_int
from nacvae.data.augment import normalize
from nacvae.data.bad_images import BadImages
from nacvae.data.catalog import dataset_stats, open_dataset
from nacvae.data.sources import FOLDER_PREFIX, ImageData
from nacvae.data.stream import StreamedImages, default_workers, eval_batches
from nacvae.errors import CheckpointError, ConfigError, DataError
from nacvae.precision import Decision, probe_images, resolve_amp
from nacvae.progress import bar
from nacvae.registry import BINARISATIONS

__all__ = [
    "as_device",
    "check_batch_size",
    "check_channels",
    "code_rule",
    "image_codes",
    "in_precision",
    "normalization_stats",
    "open_split",
    "require_projector",
    "resolve_workers",
    "streamed_batches",
    "streamed_outputs",
]


def check_batch_size(batch_size) -> int:
    check_int("batch-size", batch_size)
    return batch_size


def _input_channels(module: nn.Module) -> int | None:
    first = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return None if first is None else first.in_channels


def check_channels(encoder: nn.Module, have: int, name: str) -> None:
    want = _input_channels(encoder)
    if want is not None and want != have:
        raise ConfigError(
            f"The encoder takes {want}-channel images but {name} has {have}-channel images; "
            "evaluate it on data like the data it was trained on."
        )


def open_split(name: str, split: str, data_dir, image_size, download) -> ImageData | StreamedImages:
    return open_dataset(name, split, data_dir, download=download, image_size=image_size)


def labelled_splits(data: str, data_dir, image_size, download, scores: str, needs: str):
    """The (train, test) splits of a single-label dataset, for an evaluator that ``scores``
    one class per image ("The linear probe scores"); ``needs`` names it in the error about
    missing labels ("Linear evaluation")."""
    train = open_split(data, "train", data_dir, image_size, download)
    test = open_split(data, "test", data_dir, image_size, download)
    if isinstance(train, StreamedImages) and train.multi_label:
        raise DataError(f"{scores} one class per image, and {data} is multi-label; "
                        "evaluate its codes with `nacvae eval retrieval` instead.")
    if train.labels is None or test.labels is None or not train.classes:
        raise DataError(f"{needs} needs class labels, and the dataset {data} has none "
                        "(put the images in one sub-folder per class).")
    return train, test


def normalization_stats(name: str, data_dir, image_size, download, train=None, workers: int | None = None,
                        bad_images: BadImages | None = None):
    """The dataset's channel statistics; a folder's are computed from its train split, as in pretraining."""
    if name.startswith(FOLDER_PREFIX) and train is None:
        train = open_split(name, "train", data_dir, image_size, download)
    return dataset_stats(name, train, workers=resolve_workers(workers), bad_images=bad_images)


def bad_images_for(skip: bool) -> BadImages | None:
    """The record of skipped images of an evaluation with ``--skip-bad-images`` (None: stop at one)."""
    return BadImages() if skip else None


def bad_images_result(bad: BadImages | None) -> dict:
    """The result's ``bad_images`` field: how many unreadable images were replaced, the first by name."""
    return {} if bad is None else {"bad_images": {"count": bad.count, "first": list(bad.first)}}


def resolve_workers(workers: int | None) -> int:
    if workers is None:
        return default_workers()
    check_int("workers", workers, 0)
    return workers


@torch.no_grad()
def streamed_outputs(fn, data: StreamedImages, mean, std, batch_size: int, device, workers: int,
                     indices=None, desc: str = "codes", bad_images: BadImages | None = None) -> torch.Tensor:
    """``fn`` (codes or features) of the evaluation images of ``data`` (all, or ``indices``),
    decoded batch by batch; the result is on the CPU."""
    return torch.cat([out.cpu() for out in streamed_batches(fn, data, mean, std, batch_size, device, workers,
                                                            indices, desc, bad_images)])


def streamed_batches(fn, data: StreamedImages, mean, std, batch_size: int, device, workers: int,
                     indices=None, desc: str = "codes", bad_images: BadImages | None = None):
    """``fn`` of each batch of evaluation images of ``data``, in order, on ``device``: for
    consumers that keep only a summary (k-NN's running top k) instead of every output."""
    n = len(data) if indices is None else len(indices)
    batches = eval_batches(data, batch_size, workers, device, indices, bad_images)
    for batch in bar(batches, total=-(-n // batch_size), desc=desc, unit="batch"):
        with torch.no_grad():
            out = fn(normalize(batch, mean, std))
        yield out  # outside no_grad: the caller's code between batches runs in its own grad mode


@torch.no_grad()
def image_codes(encoder: nn.Module, images: torch.Tensor, mean, std, batch_size: int, device) -> torch.Tensor:
    """Codes [N, D] (bool, on the CPU) of uint8 images, the encoder in eval mode: sgn(a), or
    the encoder's own binarisation (``PretrainEncoder.codes``)."""
    encoder.eval()
    parts = []
    for s in bar(range(0, len(images), batch_size), desc="codes", unit="batch"):
        x = normalize(images[s : s + batch_size], mean, std).to(device)
        parts.append(encoder.codes(x).cpu())
    return torch.cat(parts)


def code_rule(encoder: nn.Module) -> str:
    """How the encoder reads its bits from a, as results state it ("sgn(a)", DeepBit's training mean)."""
    return BINARISATIONS[getattr(encoder, "binarisation", "sign")]


class _Autocast(nn.Module):
    """``inner`` under bf16 autocast, its outputs back in float32 (what evaluators reduce)."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.inner, self.dtype = inner, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.dtype):
            out = self.inner(x)
        return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out


def _with_autocast(encoder: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A view of ``encoder`` whose backbone and projection head run under autocast; it shares
    every parameter and buffer, and ``encoder`` itself is left as it is."""
    view = copy.copy(encoder)
    view.__dict__["_modules"] = dict(encoder._modules)
    for name in ("backbone", "projector", "predictor"):
        if encoder._modules.get(name) is not None:
            view._modules[name] = _Autocast(encoder._modules[name], dtype)
    return view


def in_precision(encoder: nn.Module, device: torch.device, sample: torch.Tensor | None, mean, std,
                 amp: bool | None = None) -> tuple[nn.Module, Decision]:
    """(the encoder to compute features and codes with, the precision decision): bf16 when
    ``--amp`` (or $NACVAE_AMP) asks, or by default where nacvae/precision.py's rule, timing a
    forward pass on ``sample`` (uint8 images of the data; None: not timed, float32 on a CPU),
    chooses it. The linear probe, the distances and every reduction stay float32."""
    def probe():
        x = normalize(sample[: probe_images(len(sample), tuple(sample.shape[1:]))], mean, std).to(device)
        views = {False: encoder, True: _with_autocast(encoder, torch.bfloat16)}

        @torch.no_grad()
        def forward(amp: bool) -> None:
            net = views[amp]
            h = net.backbone(x)
            if getattr(net, "projector", None) is not None:
                net.projector(h)

        return forward

    timed = sample is not None and getattr(encoder, "backbone", None) is not None
    decision = resolve_amp(torch.device(device), amp, probe if timed else None)
    if decision.amp and getattr(encoder, "backbone", None) is not None:
        return _with_autocast(encoder, torch.bfloat16), decision
    return encoder, decision


def require_projector(encoder: nn.Module, what: str) -> None:
    if getattr(encoder, "projector", None) is None:
        raise CheckpointError(
            f"{what} needs the codes sgn(a) of a projection head, and this encoder has none "
            "(a plain backbone state dict); use the pretraining run or its checkpoint."
        )


def as_device(device) -> torch.device:
    return torch.device(device) if not isinstance(device, torch.device) else device
