"""``evaluate_linear``: the linear probe of an encoder on a dataset, end to end.

A linear classifier is trained on the frozen backbone's features h, with the "fast"
protocol (features computed once from un-augmented images) or the "paper" protocol
(every training batch freshly cropped and flipped). In-memory datasets use the trainers
of ``nacvae.eval.linear`` directly; streamed ones (ImageNet, large folders) are decoded
batch by batch by worker processes, the paper protocol's crops drawn there or on the
device. The result is a plain dict of numbers that can be printed as JSON or appended to
a run's metrics.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nacvae.data.augment import AugmentConfig, augment, default_augment, normalize
from nacvae.data.crops import CROP_RATIO, CROP_SCALE
from nacvae.data.stream import StreamedImages, train_batches
from nacvae.errors import ConfigError
from nacvae.eval.features import (
    as_device, bad_images_for, bad_images_result, check_batch_size, check_channels, in_precision, labelled_splits,
    normalization_stats, resolve_workers, streamed_outputs
)
from nacvae.eval.linear import (
    extract_features, train_linear_classifier, train_linear_probe_augmented, train_linear_probe_streamed
)
from nacvae.models.backbones import fast_layout

__all__ = ["PROTOCOLS", "evaluate_linear"]

PROTOCOLS = ("fast", "paper")


def evaluate_linear(
    encoder: nn.Module,
    data: str,
    data_dir: str | Path | None = None,
    protocol: str = "fast",
    epochs: int = 100,
    batch_size: int = 1000,
    lr: float = 1.0,
    seed: int = 0,
    device="cpu",
    image_size: int | None = None,
    download: bool = True,
    workers: int | None = None,
    skip_bad_images: bool = False,
    amp: bool | None = None,
) -> dict[str, Any]:
    """Linear classification accuracy of the frozen backbone's features h.

    ``protocol="fast"``: features of the un-augmented train and test images are computed
    once and the classifier is trained on them. ``protocol="paper"``: each training batch
    is freshly augmented with RandomResizedCrop (the dataset's crop scale) and the
    dataset's flip probability, no colour jitter or grayscale, before its features are
    computed; test images are only normalised. Both: ``nn.Linear`` from the features to
    the classes, SGD with Nesterov momentum 0.9, no weight decay, ``lr`` decayed to 0 by a
    per-step cosine over ``epochs``, ``batch_size`` images per step.

    Streamed datasets (ImageNet) are decoded batch by batch by ``workers`` processes:
    evaluation images are resized and centre-cropped; with the paper protocol each training
    image is a fresh random-resized crop, flipped with probability 0.5. Multi-label data
    (FLICKR-25K) is refused: a linear probe scores one class per image.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"Unknown linear protocol '{protocol}'; choose fast or paper.")
    batch_size = check_batch_size(batch_size)
    device = as_device(device)
    start = time.perf_counter()
    train, test = labelled_splits(data, data_dir, image_size, download, "The linear probe scores", "Linear evaluation")
    check_channels(encoder, train.image_shape[0], data)
    num_classes = len(train.classes)
    bad = bad_images_for(skip_bad_images)  # streamed data: unreadable images replaced, not fatal
    mean, std = normalization_stats(data, data_dir, image_size, download, train, workers, bad)
    encoder = fast_layout(encoder, device).eval()
    sample = None if isinstance(train, StreamedImages) else train.images[:batch_size]
    encoder, precision = in_precision(encoder, device, sample, mean, std, amp)
    backbone = encoder.backbone
    norm = lambda x: normalize(x, mean, std)  # noqa: E731
    extra: dict[str, Any] = {}
    if isinstance(train, StreamedImages):
        out, extra = _linear_streamed(backbone, train, test, num_classes, protocol, mean, std, epochs, batch_size,
                                      lr, seed, device, resolve_workers(workers), bad)
    elif protocol == "fast":
        train_x = extract_features(backbone, train.images, norm, batch_size, device)
        test_x = extract_features(backbone, test.images, norm, batch_size, device)
        out = train_linear_classifier(train_x, train.labels, test_x, test.labels, num_classes, epochs=epochs,
                                      batch_size=batch_size, lr=lr, seed=seed, device=device)
        extra["augmentation"] = None
    else:
        base = default_augment(data, train.image_shape, mean, std)
        cfg = AugmentConfig(size=train.image_shape[-1], mean=mean, std=std, crop_scale=base.crop_scale,
                            crop_ratio=base.crop_ratio, flip_p=base.flip_p, jitter_p=0.0, gray_p=0.0)
        out = train_linear_probe_augmented(
            backbone, train.images, train.labels, test.images, test.labels, num_classes,
            augment_fn=lambda x, g: augment(x, cfg, g), normalize_fn=norm, epochs=epochs,
            batch_size=batch_size, lr=lr, seed=seed, device=device)
        extra["augmentation"] = {"crop_scale": list(cfg.crop_scale), "crop_ratio": list(cfg.crop_ratio),
                                 "flip_p": cfg.flip_p}
    return {
        "protocol": out["protocol"],
        "train_accuracy": out["train_accuracy"],
        "test_accuracy": out["test_accuracy"],
        "train_loss": out["train_loss"],
        "features": "h",
        "feature_dim": out["feature_dim"],
        "num_classes": num_classes,
        "num_train": out["num_train"],
        "num_test": out["num_test"],
        "epochs": out["epochs"],
        "steps": out["steps"],
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "dataset": data,
        "amp": precision.amp,
        **extra,
        **bad_images_result(bad),
        "seconds": round(time.perf_counter() - start, 2),
    }


def _linear_streamed(backbone, train: StreamedImages, test: StreamedImages, num_classes: int, protocol: str,
                     mean, std, epochs: int, batch_size: int, lr: float, seed: int, device, workers: int,
                     bad=None):
    """The linear probe on streamed data: (``train_linear_*``'s result, extra fields)."""
    def features(x):
        return torch.flatten(backbone(x), 1).float()

    test_x = streamed_outputs(features, test, mean, std, batch_size, device, workers, desc="features", bad_images=bad)
    if protocol == "fast":
        train_x = streamed_outputs(features, train, mean, std, batch_size, device, workers, desc="features",
                                   bad_images=bad)
        out = train_linear_classifier(train_x, train.labels, test_x, test.labels, num_classes, epochs=epochs,
                                      batch_size=batch_size, lr=lr, seed=seed, device=device)
        return out, {"augmentation": None}
    # Paper protocol: a random-resized crop per image from the workers (imagenet crop), or the
    # in-memory crop of the batched augmentation (streamed folders); then a flip on the device.
    base = default_augment(train.name, train.image_shape, mean, std)
    if train.crop == "imagenet":
        scale, ratio, device_scale, device_ratio = CROP_SCALE, CROP_RATIO, (1.0, 1.0), (1.0, 1.0)
    else:
        scale, ratio = base.crop_scale, base.crop_ratio
        device_scale, device_ratio = scale, ratio
    cfg = AugmentConfig(size=train.size, mean=mean, std=std, crop_scale=device_scale, crop_ratio=device_ratio,
                        flip_p=base.flip_p, jitter_p=0.0, gray_p=0.0)
    gen = torch.Generator(device=device).manual_seed(int(seed))

    def epoch_batches(epoch: int, order: torch.Tensor, size: int):
        keys = [[(epoch, int(i)) for i in order[s:s + size]] for s in range(0, len(order), size)]
        for batch in train_batches(train, keys, 1, seed, workers, device, bad):
            yield augment(batch[:, 0] if batch.dim() == 5 else batch, cfg, gen)

    out = train_linear_probe_streamed(backbone, epoch_batches, train.labels, test_x, test.labels, num_classes,
                                      epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device)
    return out, {"augmentation": {"crop_scale": list(scale), "crop_ratio": list(ratio), "flip_p": cfg.flip_p}}
