"""Datasets (held in memory as uint8 tensors, or streamed: ``catalog.open_dataset``) and batched on-device augmentation."""

from nacvae.data.augment import AugmentConfig, augment, default_augment, normalize, two_views
from nacvae.data.sources import (
    DATASET_NAMES,
    ImageData,
    channel_stats,
    default_data_dir,
    load_dataset,
)

__all__ = [
    "DATASET_NAMES",
    "AugmentConfig",
    "ImageData",
    "augment",
    "channel_stats",
    "default_augment",
    "default_data_dir",
    "load_dataset",
    "normalize",
    "two_views",
]
