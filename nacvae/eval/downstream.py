"""Downstream evaluations of an encoder on a dataset (docs/evaluation.md), end to end.

Each function loads the data, computes features or codes with the encoder frozen in
eval mode (batch-norm statistics included), batched, under ``torch.no_grad`` and with
the eval transform (``normalize`` with the dataset's channel statistics), and returns a
plain dict of numbers that can be printed as JSON or appended to a run's metrics.

- ``evaluate_linear``: a linear classifier on the backbone's features h, with the
  "fast" protocol (features computed once from un-augmented images) or the "paper"
  protocol (every training batch freshly cropped and flipped).
- ``evaluate_retrieval``: Hamming-ranking mAP of the codes sgn(a) (a = projection
  output) on the pooled train+test query/gallery split of ``retrieval_pool``.
- ``evaluate_codes``: spread of the codes sgn(a) over one split (``code_statistics``).

``resolve_encoder`` finds the encoder to evaluate: a run folder, a checkpoint, a plain
backbone state dict (linear evaluation only), or the seeded random baseline.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nacvae.data.augment import AugmentConfig, augment, default_augment, normalize
from nacvae.data.catalog import dataset_stats, open_dataset
from nacvae.data.sources import FOLDER_PREFIX, ImageData
from nacvae.data.stream import StreamedImages, default_workers, eval_batches, train_batches
from nacvae.errors import CheckpointError, ConfigError, DataError
from nacvae.eval.codes import code_statistics
from nacvae.eval.linear import (
    extract_features,
    train_linear_classifier,
    train_linear_probe_augmented,
    train_linear_probe_streamed,
)
from nacvae.eval.retrieval import mean_average_precision
from nacvae.models.backbones import fast_layout
from nacvae.progress import bar

__all__ = [
    "BackboneOnly",
    "PROTOCOLS",
    "encoder_summary",
    "evaluate_codes",
    "evaluate_linear",
    "evaluate_retrieval",
    "record",
    "resolve_encoder",
]

PROTOCOLS = ("fast", "paper")
DEFAULT_CODE_DIM = 128
DEFAULT_DATA = "digits"


class BackboneOnly(nn.Module):
    """A backbone without heads, from a plain state dict: features only, no codes."""

    projector = None

    def __init__(self, backbone: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim


# --------------------------------------------------------------------- the encoder


def _check_arch(arch: str | None) -> None:
    from nacvae.models.backbones import ARCHITECTURES

    if arch is not None and arch not in ARCHITECTURES:
        raise ConfigError(f"Unknown architecture '{arch}'; choose one of {', '.join(ARCHITECTURES)}.")


def _run_config(run: Path) -> dict[str, Any]:
    from nacvae.runs import read_config

    if not run.is_dir():
        raise CheckpointError(f"The run folder {run} does not exist.")
    config = read_config(run)
    if config.get("kind") != "pretrain":
        raise CheckpointError(f"{run} is a {config.get('kind')} run, not a pretraining run.")
    return config


def _load_plain_state_dict(path: Path) -> dict[str, torch.Tensor] | None:
    """The file as a plain ``{name: tensor}`` dict (as ``nacvae export`` writes), else None."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - anything unreadable is simply not a state dict
        return None
    if isinstance(obj, dict) and obj and "format" not in obj and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        return obj
    return None


def _dataset_shape(data: str, data_dir, image_size: int | None, download: bool) -> tuple[int, int, int]:
    return open_dataset(data, "train", data_dir, download=download, image_size=image_size).image_shape


def resolve_encoder(
    run: str | Path | None = None,
    checkpoint: str | Path | None = None,
    init: str | None = None,
    arch: str | None = None,
    data: str | None = None,
    data_dir: str | Path | None = None,
    seed: int = 0,
    code_dim: int | None = None,
    image_size: int | None = None,
    download: bool = True,
) -> tuple[nn.Module, dict[str, Any], str, str | None]:
    """The encoder to evaluate, its description, and the dataset to evaluate it on.

    Exactly one source: ``run`` (a pretraining run folder), ``checkpoint`` (a pretraining
    checkpoint, or a plain backbone state dict together with ``arch``), or
    ``init="random"`` (same architecture and heads, initialised with ``seed``; ``arch``
    defaults to the dataset's, as in pretraining; ``code_dim`` bits, 128 by default). ``arch`` given with a run or checkpoint
    must match it. ``data`` / ``data_dir`` / ``image_size`` default to the run's (the
    checkpoint's configuration); the random baseline takes ``data`` or digits.

    Returns ``(encoder, meta, data, data_dir)``; the encoder is in eval mode on the CPU
    and ``meta["image_shape"]`` is the input shape it expects.
    """
    from nacvae.transfer import checkpoint_path, load_encoder, random_encoder

    _check_arch(arch)
    if init is not None:
        if init != "random":
            raise ConfigError(f"Unknown --init '{init}'; the only initialisation is 'random'.")
        if run is not None or checkpoint is not None:
            raise ConfigError("--init random cannot be combined with --run or --checkpoint.")
        data = data or DEFAULT_DATA
        code_dim = DEFAULT_CODE_DIM if code_dim is None else code_dim
        if isinstance(code_dim, bool) or not isinstance(code_dim, int) or code_dim < 1:
            raise ConfigError(f"--code-dim must be a positive integer, got {code_dim!r}.")
        shape = _dataset_shape(data, data_dir, image_size, download)
        arch = _default_arch(data) if arch is None else arch
        encoder, meta = random_encoder(arch, shape, code_dim=code_dim, seed=seed, dataset=data)
        meta = {**meta, "run": None}
        return encoder.eval(), meta, data, None if data_dir is None else str(data_dir)

    if run is None and checkpoint is None:
        raise ConfigError("Give --run or --checkpoint, or --init random.")
    if run is not None and checkpoint is not None:
        raise ConfigError("Give only one of --run and --checkpoint.")
    if run is not None:
        _run_config(Path(run))
    path = checkpoint_path(run, checkpoint)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint file at {path}.")
    try:
        encoder, meta = load_encoder(path, arch=arch)
    except CheckpointError:
        state = _load_plain_state_dict(path) if checkpoint is not None else None
        if state is None:
            raise
        return _backbone_from_state_dict(path, state, arch, data, data_dir, image_size, download)
    if code_dim is not None and code_dim != meta["code_dim"]:
        raise ConfigError(f"{path} has {meta['code_dim']}-bit codes, not the {code_dim} asked for with --code-dim.")
    config = meta.get("config") or {}
    if data is None:
        data = meta.get("dataset") or config.get("data")
        if data_dir is None:
            data_dir = config.get("data_dir")
    meta = {k: v for k, v in meta.items() if k != "config"}
    meta["run"] = None if run is None else str(run)
    return encoder.eval(), meta, data, None if data_dir is None else str(data_dir)


def _default_arch(data: str) -> str:
    """The dataset's default architecture, as ``nacvae pretrain`` picks it."""
    from nacvae.train.config import DATASET_DEFAULTS, dataset_family

    family = dataset_family(data)
    if family not in DATASET_DEFAULTS:
        raise ConfigError(f"Unknown dataset '{data}'; give --arch for the random encoder.")
    return DATASET_DEFAULTS[family]["arch"]


def _backbone_from_state_dict(path, state, arch, data, data_dir, image_size, download):
    from nacvae.models.backbones import build_backbone, stem_for

    if arch is None:
        raise CheckpointError(
            f"{path} is a plain state dict, not a nacvae checkpoint; pass --arch to say which backbone it holds."
        )
    data = data or DEFAULT_DATA
    shape = _dataset_shape(data, data_dir, image_size, download)
    backbone, feature_dim = build_backbone(arch, shape[0], shape[1], stem=stem_for(data))
    try:
        backbone.load_state_dict(state)
    except RuntimeError:
        raise CheckpointError(
            f"{path} does not hold the weights of a {arch} backbone for {shape[0]}-channel images."
        ) from None
    meta = {"arch": arch, "objective": None, "code_dim": None, "image_shape": list(shape),
            "feature_dim": feature_dim, "checkpoint": str(path), "dataset": None, "run": None}
    return BackboneOnly(backbone, feature_dim).eval(), meta, data, None if data_dir is None else str(data_dir)


def encoder_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``resolve_encoder``'s meta that identify what was evaluated."""
    keys = ("objective", "arch", "code_dim", "checkpoint", "run", "step", "complete", "seed")
    out = {k: meta.get(k) for k in keys if k in meta}
    if meta.get("objective") == "random":
        out["init"] = "random"
    if meta.get("dataset"):
        out["pretrain_dataset"] = meta["dataset"]
    return out


def record(run: str | Path, event: str, result: dict[str, Any]) -> None:
    """Append ``{"event": event, "time": ..., **result}`` to the run's metrics file."""
    from nacvae.runs import append_metrics

    append_metrics(Path(run), {"event": event, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **_plain(result)})


def _plain(result: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN: report an undefined number as null.
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result.items()}


# ------------------------------------------------------------------------- helpers


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {batch_size!r}.")
    return batch_size


def _input_channels(module: nn.Module) -> int | None:
    first = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return None if first is None else first.in_channels


def _check_channels(encoder: nn.Module, have: int, name: str) -> None:
    want = _input_channels(encoder)
    if want is not None and want != have:
        raise ConfigError(
            f"The encoder takes {want}-channel images but {name} has {have}-channel images; "
            "evaluate it on data like the data it was trained on."
        )


def _load(name: str, split: str, data_dir, image_size, download) -> ImageData | StreamedImages:
    return open_dataset(name, split, data_dir, download=download, image_size=image_size)


def _stats(name: str, data_dir, image_size, download, train=None, workers: int | None = None):
    """The dataset's channel statistics; a folder's are computed from its train split, as in pretraining."""
    if name.startswith(FOLDER_PREFIX) and train is None:
        train = _load(name, "train", data_dir, image_size, download)
    return dataset_stats(name, train, workers=_workers(workers))


def _workers(workers: int | None) -> int:
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"--workers must be a non-negative integer, got {workers!r}.")
    return workers


@torch.no_grad()
def _streamed_outputs(fn, data: StreamedImages, mean, std, batch_size: int, device, workers: int,
                      indices=None, desc: str = "codes") -> torch.Tensor:
    """``fn`` (codes or features) of the evaluation images of ``data`` (all, or ``indices``),
    decoded batch by batch; the result is on the CPU."""
    n = len(data) if indices is None else len(indices)
    parts = []
    batches = eval_batches(data, batch_size, workers, device, indices)
    for batch in bar(batches, total=-(-n // batch_size), desc=desc, unit="batch"):
        parts.append(fn(normalize(batch, mean, std)).cpu())
    return torch.cat(parts)


@torch.no_grad()
def _codes(encoder: nn.Module, images: torch.Tensor, mean, std, batch_size: int, device) -> torch.Tensor:
    """Codes sgn(a) [N, D] (bool, on the CPU) of uint8 images, the encoder in eval mode."""
    encoder.eval()
    parts = []
    for s in bar(range(0, len(images), batch_size), desc="codes", unit="batch"):
        x = normalize(images[s : s + batch_size], mean, std).to(device)
        parts.append(encoder.codes(x).cpu())
    return torch.cat(parts)


def _require_projector(encoder: nn.Module, what: str) -> None:
    if getattr(encoder, "projector", None) is None:
        raise CheckpointError(
            f"{what} needs the codes sgn(a) of a projection head, and this encoder has none "
            "(a plain backbone state dict); use the pretraining run or its checkpoint."
        )


def _device(device) -> torch.device:
    return torch.device(device) if not isinstance(device, torch.device) else device


# ----------------------------------------------------------------------- linear probe


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
    batch_size = _check_batch_size(batch_size)
    device = _device(device)
    start = time.perf_counter()
    train = _load(data, "train", data_dir, image_size, download)
    test = _load(data, "test", data_dir, image_size, download)
    if isinstance(train, StreamedImages) and train.multi_label:
        raise DataError(f"The linear probe scores one class per image, and {data} is multi-label; "
                        "evaluate its codes with `nacvae eval retrieval` instead.")
    if train.labels is None or test.labels is None or not train.classes:
        raise DataError(
            f"Linear evaluation needs class labels, and the dataset {data} has none "
            "(put the images in one sub-folder per class)."
        )
    _check_channels(encoder, train.image_shape[0], data)
    num_classes = len(train.classes)
    mean, std = _stats(data, data_dir, image_size, download, train, workers)
    backbone = fast_layout(encoder, device).eval().backbone
    norm = lambda x: normalize(x, mean, std)  # noqa: E731
    extra: dict[str, Any] = {}
    if isinstance(train, StreamedImages):
        out, extra = _linear_streamed(backbone, train, test, num_classes, protocol, mean, std, epochs, batch_size,
                                      lr, seed, device, _workers(workers))
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
        **extra,
        "seconds": round(time.perf_counter() - start, 2),
    }


def _linear_streamed(backbone, train: StreamedImages, test: StreamedImages, num_classes: int, protocol: str,
                     mean, std, epochs: int, batch_size: int, lr: float, seed: int, device, workers: int):
    """The linear probe on streamed data: (``train_linear_*``'s result, extra fields)."""
    def features(x):
        return torch.flatten(backbone(x), 1).float()

    test_x = _streamed_outputs(features, test, mean, std, batch_size, device, workers, desc="features")
    if protocol == "fast":
        train_x = _streamed_outputs(features, train, mean, std, batch_size, device, workers, desc="features")
        out = train_linear_classifier(train_x, train.labels, test_x, test.labels, num_classes, epochs=epochs,
                                      batch_size=batch_size, lr=lr, seed=seed, device=device)
        return out, {"augmentation": None}
    # Paper protocol: a random-resized crop per image from the workers (imagenet crop), or the
    # in-memory crop of the batched augmentation (streamed folders); then a flip on the device.
    base = default_augment(train.name, train.image_shape, mean, std)
    if train.crop == "imagenet":
        from nacvae.data.stream import CROP_RATIO, CROP_SCALE

        scale, ratio, device_scale, device_ratio = CROP_SCALE, CROP_RATIO, (1.0, 1.0), (1.0, 1.0)
    else:
        scale, ratio = base.crop_scale, base.crop_ratio
        device_scale, device_ratio = scale, ratio
    cfg = AugmentConfig(size=train.size, mean=mean, std=std, crop_scale=device_scale, crop_ratio=device_ratio,
                        flip_p=base.flip_p, jitter_p=0.0, gray_p=0.0)
    gen = torch.Generator(device=device).manual_seed(int(seed))

    def epoch_batches(epoch: int, order: torch.Tensor, size: int):
        keys = [[(epoch, int(i)) for i in order[s:s + size]] for s in range(0, len(order), size)]
        for batch in train_batches(train, keys, 1, seed, workers, device):
            yield augment(batch[:, 0] if batch.dim() == 5 else batch, cfg, gen)

    out = train_linear_probe_streamed(backbone, epoch_batches, train.labels, test_x, test.labels, num_classes,
                                      epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device)
    return out, {"augmentation": {"crop_scale": list(scale), "crop_ratio": list(ratio), "flip_p": cfg.flip_p}}


# --------------------------------------------------------------------------- retrieval

# hamming: Hamming distance, ties by gallery index; paper: the paper code's {0,1} inner product.
RANKINGS = ("hamming", "paper")


def evaluate_retrieval(
    encoder: nn.Module,
    data: str,
    data_dir: str | Path | None = None,
    topk: int | None = None,
    count_empty: bool = False,
    seed: int = 0,
    queries_per_class: int | None = None,
    batch_size: int = 1000,
    device="cpu",
    image_size: int | None = None,
    download: bool = True,
    ranking: str = "hamming",
    workers: int | None = None,
) -> dict[str, Any]:
    """Hamming-ranking mAP@topk of the codes sgn(a) on the retrieval split of ``data``.

    The split (``retrieval_pool``, seeded by ``seed``) pools the train and test images
    and draws ``queries_per_class`` queries per class (1,000 for CIFAR-10, the paper's
    split; see ``nacvae.data.splits`` elsewhere); every other image is the gallery. Ties
    in distance are ranked by gallery index; queries without a relevant item in the top
    ``topk`` are left out of the mean, or count as 0 with ``count_empty``. With
    ``ranking="paper"`` the gallery is ranked as the paper's code does it instead: by the
    inner product of {0,1} codes, ties as numpy's default sort leaves them
    (``nacvae.eval.paper_ranking``).

    Streamed datasets are decoded batch by batch by ``workers`` processes. FLICKR-25K is
    multi-label: its split draws 2,000 queries from all labelled images
    (``nacvae.data.flickr``), and a gallery item is relevant when it shares a label with
    the query.
    """
    from nacvae.data.catalog import streams
    from nacvae.data.pool import retrieval_pool, streamed_retrieval_pool
    from nacvae.eval.paper_ranking import paper_mean_average_precision

    if ranking not in RANKINGS:
        raise ConfigError(f"Unknown ranking '{ranking}'; choose one of {', '.join(RANKINGS)}.")

    _require_projector(encoder, "Retrieval")
    batch_size = _check_batch_size(batch_size)
    if topk is not None and (isinstance(topk, bool) or not isinstance(topk, int) or topk < 1):
        raise ConfigError(f"--topk must be a positive integer, got {topk!r}.")
    if queries_per_class is not None and (isinstance(queries_per_class, bool) or not isinstance(queries_per_class, int)
                                          or queries_per_class < 1):
        raise ConfigError(f"--queries-per-class must be a positive integer, got {queries_per_class!r}.")
    device = _device(device)
    start = time.perf_counter()
    streamed = streams(data, image_size)
    make_pool = streamed_retrieval_pool if streamed else retrieval_pool
    extra = {} if streamed else {"download": download}
    pool = make_pool(data, data_dir, image_size, seed=seed, queries_per_class=queries_per_class, **extra)
    multi_label = pool.labels.dim() == 2
    if multi_label and ranking != "hamming":
        raise ConfigError(f"--ranking {ranking} takes one class per image, and {data} is multi-label; "
                          "use --ranking hamming.")
    classes = int(pool.labels.shape[1]) if multi_label else int(torch.unique(pool.labels).numel())
    if classes < 2:  # every gallery item would be relevant to every query: mAP 1 for any codes
        raise DataError(f"Retrieval needs at least 2 classes, and the dataset {data} has {classes}.")
    query, gallery = pool.split["query"], pool.split["gallery"]
    if topk is not None and topk > len(gallery):
        raise ConfigError(f"--topk is {topk} but the gallery holds only {len(gallery)} images.")
    _check_channels(encoder, pool.stream.channels if streamed else int(pool.images.shape[1]), data)
    mean, std = _stats(data, data_dir, image_size, download, workers=workers)
    encoder = fast_layout(encoder, device).eval()
    if streamed:
        w = _workers(workers)
        q_codes = _streamed_outputs(encoder.codes, pool.stream, mean, std, batch_size, device, w, query)
        g_codes = _streamed_outputs(encoder.codes, pool.stream, mean, std, batch_size, device, w, gallery)
    else:
        q_codes = _codes(encoder, pool.images[query], mean, std, batch_size, device)
        g_codes = _codes(encoder, pool.images[gallery], mean, std, batch_size, device)
    score = mean_average_precision if ranking == "hamming" else paper_mean_average_precision
    value = score(q_codes, pool.labels[query], g_codes, pool.labels[gallery], topk=topk, count_empty=count_empty)
    described = pool.describe()
    return {
        "map": value,
        "metric": "mAP@all" if topk is None else f"mAP@{topk}",
        "topk": len(gallery) if topk is None else topk,
        "num_queries": described["num_queries"],
        "gallery_size": described["gallery_size"],
        "bits": int(q_codes.shape[1]),
        "codes": "sgn(a)",
        "ranking": ranking,
        "ties": "gallery-index" if ranking == "hamming" else "numpy-default-argsort",
        "empty_queries": "zero" if count_empty else "excluded",
        "split": _split_name(data, pool),
        "relevance": "shares a label" if multi_label else "same label",
        "queries_per_class": described["queries_per_class"],
        "split_seed": described["split_seed"],
        "dataset": data,
        "seconds": round(time.perf_counter() - start, 2),
    }


def _split_name(data: str, pool) -> str:
    """"paper" for the paper's splits (CIFAR-10, and FLICKR-25K at its full size), else "analogue"."""
    if data.lower() == "cifar10":
        return "paper"
    if data.lower() == "flickr25k":
        from nacvae.data.flickr import PAPER_QUERIES, PAPER_TRAIN

        sizes = (len(pool.split["query"]), len(pool.split["train"]))
        return "paper" if sizes == (PAPER_QUERIES, PAPER_TRAIN) else "analogue"
    return "analogue"


# ----------------------------------------------------------------------- code spread


def evaluate_codes(
    encoder: nn.Module,
    data: str,
    data_dir: str | Path | None = None,
    split: str = "test",
    batch_size: int = 1000,
    device="cpu",
    image_size: int | None = None,
    download: bool = True,
    workers: int | None = None,
) -> dict[str, Any]:
    """Statistics of the codes sgn(a) of every image of one split (``code_statistics``).

    Distinct codewords, their fraction, the exact mean Hamming distance over all pairs
    of different images (also as a fraction of the code length), and the bit balance.
    """
    _require_projector(encoder, "Code statistics")
    batch_size = _check_batch_size(batch_size)
    device = _device(device)
    start = time.perf_counter()
    images = _load(data, split, data_dir, image_size, download)
    _check_channels(encoder, images.image_shape[0], data)
    mean, std = _stats(data, data_dir, image_size, download, images if split == "train" else None, workers)
    encoder = fast_layout(encoder, device).eval()
    if isinstance(images, StreamedImages):
        codes = _streamed_outputs(encoder.codes, images, mean, std, batch_size, device, _workers(workers))
    else:
        codes = _codes(encoder, images.images, mean, std, batch_size, device)
    stats = code_statistics(codes)
    hamming = stats["mean_pairwise_hamming"]
    return {
        **stats,
        "mean_pairwise_hamming_fraction": hamming / stats["code_length"],
        "codes": "sgn(a)",
        "dataset": data,
        "split": split,
        "seconds": round(time.perf_counter() - start, 2),
    }
