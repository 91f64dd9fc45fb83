"""Linear evaluation of a frozen encoder.

Two protocols, both an ``nn.Linear`` trained with SGD (Nesterov momentum 0.9, lr 1.0,
no weight decay, cosine decay to 0 per step, batch 1000, 100 epochs by default):

- ``train_linear_classifier`` ("fast"): on features computed once from un-augmented
  images; the common variant in other libraries.
- ``train_linear_probe_augmented`` ("paper"): the backbone stays frozen in eval mode
  and each training batch is freshly augmented (RandomResizedCrop + flip) before its
  features are computed; test images are only normalised.

Features are used as they are, without standardisation, as in the paper. Accuracies
are fractions in [0, 1]. ``train_accuracy`` is measured on the batches the classifier
saw during its last epoch (augmented ones in the paper protocol), before each step.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from nacvae.checks import check_int
from nacvae.errors import ConfigError, DataError, TrainingError
from nacvae.progress import bar

__all__ = ["extract_features", "train_linear_classifier", "train_linear_probe_augmented", "train_linear_probe_streamed"]


def _check_options(num_classes, epochs, batch_size, lr, momentum, nesterov, weight_decay) -> None:
    for name, value in (("num_classes", num_classes), ("epochs", epochs), ("batch_size", batch_size)):
        check_int(name, value, prefix="")
    if num_classes < 2:
        raise ConfigError(f"A linear probe needs at least 2 classes, got {num_classes}.")
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"The learning rate must be a positive number, got {lr!r}.")
    if not 0 <= momentum < 1:
        raise ConfigError(f"momentum must lie in [0, 1), got {momentum!r}.")
    if nesterov and momentum == 0:
        raise ConfigError("Nesterov momentum needs a momentum above 0.")
    if weight_decay < 0:
        raise ConfigError(f"weight_decay must not be negative, got {weight_decay!r}.")


def _check_labels(labels: torch.Tensor, n: int, num_classes: int, name: str) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or len(labels) != n:
        raise DataError(f"{name} must be a 1-D tensor with one label per example ({n}).")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise DataError(f"{name} must hold integer class ids, got dtype {labels.dtype}.")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{name} must lie in [0, {num_classes - 1}] for {num_classes} classes.")
    return labels.long()


def _check_images(images: torch.Tensor, name: str) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise DataError(f"{name} must be a uint8 tensor of shape [N, C, H, W].")
    if len(images) == 0:
        raise DataError(f"{name} must hold at least one image.")


def _new_classifier(num_features: int, num_classes: int, generator: torch.Generator) -> nn.Linear:
    # nn.Linear's default initialisation, drawn from the given generator.
    layer = nn.Linear(num_features, num_classes)
    bound = 1.0 / math.sqrt(num_features)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


class ProbeSGD:
    """SGD with (Nesterov) momentum, the arithmetic of ``torch.optim.SGD``'s single-tensor
    path step for step (tests/eval/test_linear.py checks it bit for bit). Constructing a
    ``torch.optim`` optimiser imports torch._dynamo, about 1.5 s: most of a quick probe's
    time on a small CPU."""

    def __init__(self, params: list[torch.Tensor], momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, lr: float = 0.0) -> None:
        self.params, self.momentum, self.nesterov, self.weight_decay, self.lr = (
            params, momentum, nesterov, weight_decay, lr)
        self.buffers: list[torch.Tensor | None] = [None] * len(params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            grad = p.grad
            if self.weight_decay != 0:
                grad = grad.add(p, alpha=self.weight_decay)
            if self.momentum != 0:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = torch.clone(grad).detach()
                else:
                    buf.mul_(self.momentum).add_(grad)
                grad = grad.add(buf, alpha=self.momentum) if self.nesterov else buf
            p.add_(grad, alpha=-self.lr)


def _fit(
    batch_features: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    labels: torch.Tensor,
    num_features: int,
    num_classes: int,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    generator: torch.Generator,
    device,
    epoch_features: Callable[[torch.Tensor], Iterator[torch.Tensor]] | None = None,
) -> tuple[nn.Linear, dict]:
    """Train the classifier; ``batch_features(indices, device_indices)`` gives features on
    ``device`` for the examples ``indices`` (on the CPU; the same on ``device``).

    ``epoch_features(order)``, when given, is used instead: an iterator over the features of
    each step's examples of the epoch's ``order``, in turn (a loader that reads ahead)."""
    classifier = _new_classifier(num_features, num_classes, generator).to(device)
    optimizer = ProbeSGD(list(classifier.parameters()), momentum, nesterov, weight_decay)
    n = len(labels)
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = epochs * steps_per_epoch
    labels = labels.to(device)
    step = 0
    for _ in bar(range(epochs), desc="linear probe", unit="epoch"):
        order = torch.randperm(n, generator=generator)
        # One copy of the epoch's order to the device, rather than a blocking copy of
        # each step's indices; the sums below stay there too, so no step waits for it.
        order_on_device = order.to(device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        loss_sum = torch.zeros((), device=device)
        seen = 0
        streamed = None if epoch_features is None else epoch_features(order)
        for s in range(0, n, batch_size):
            idx, idx_on_device = order[s : s + batch_size], order_on_device[s : s + batch_size]
            optimizer.lr = lr * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
            target = labels[idx_on_device]
            features = next(streamed) if streamed is not None else batch_features(idx, idx_on_device)
            logits = classifier(features)
            loss = F.cross_entropy(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            correct += (logits.argmax(1) == target).sum()
            loss_sum += loss.detach() * len(idx)
            seen += len(idx)
        if not torch.isfinite(loss_sum):
            raise TrainingError("The linear classifier's loss became non-finite; try a smaller learning rate.")
    stats = {
        "train_accuracy": int(correct) / seen,
        "train_loss": float(loss_sum) / seen,
        "epochs": epochs,
        "steps": total_steps,
        "num_train": n,
    }
    return classifier, stats


@torch.no_grad()
def _accuracy(
    classifier: nn.Linear, features: torch.Tensor, labels: torch.Tensor, batch_size: int, device
) -> float:
    correct = 0
    for s in range(0, len(features), batch_size):
        logits = classifier(features[s : s + batch_size].to(device))
        correct += int((logits.argmax(1).cpu() == labels[s : s + batch_size]).sum())
    return correct / len(features)


def train_linear_classifier(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    epochs: int = 100,
    batch_size: int = 1000,
    lr: float = 1.0,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 0.0,
    seed: int = 0,
    device="cpu",
) -> dict:
    """The "fast" protocol: a linear classifier on precomputed features [N, F].

    Returns a dict with ``train_accuracy``, ``test_accuracy``, ``train_loss``,
    ``epochs``, ``steps``, ``num_train``, ``num_test``, ``feature_dim`` and
    ``protocol`` ("fast"). The seed fixes the initialisation and the batch order.
    """
    _check_options(num_classes, epochs, batch_size, lr, momentum, nesterov, weight_decay)
    features = {}
    for name, x in (("train features", train_features), ("test features", test_features)):
        x = torch.as_tensor(x)
        if x.dim() != 2 or len(x) == 0:
            raise DataError(f"The {name} must be a non-empty tensor of shape [N, F].")
        if not torch.isfinite(x).all():
            raise DataError(f"The {name} contain non-finite values.")
        features[name] = x.float()
    train_x, test_x = features["train features"], features["test features"]
    if train_x.shape[1] != test_x.shape[1]:
        raise DataError(
            f"Train features have {train_x.shape[1]} dimensions but test features have {test_x.shape[1]}."
        )
    train_y = _check_labels(train_labels, len(train_x), num_classes, "train labels")
    test_y = _check_labels(test_labels, len(test_x), num_classes, "test labels")

    generator = torch.Generator().manual_seed(int(seed))
    train_on_device = train_x.to(device)
    classifier, stats = _fit(
        lambda idx, idx_on_device: train_on_device[idx_on_device],
        train_y, train_x.shape[1], num_classes, epochs, batch_size, lr, momentum, nesterov,
        weight_decay, generator, device,
    )
    stats["test_accuracy"] = _accuracy(classifier, test_x, test_y.cpu(), batch_size, device)
    stats.update(num_test=len(test_x), feature_dim=int(train_x.shape[1]), protocol="fast")
    return stats


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    images_uint8: torch.Tensor,
    normalize_fn: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 1000,
    device="cpu",
) -> torch.Tensor:
    """Features [N, F] (float, on the CPU) of uint8 images [N, C, H, W].

    The backbone is put in eval mode (and left there); each batch goes through
    ``normalize_fn`` on the CPU and then to ``device``. Outputs are flattened to [B, F].
    """
    _check_images(images_uint8, "images")
    check_int("batch_size", batch_size, prefix="")
    backbone.eval()
    parts = []
    for s in bar(range(0, len(images_uint8), batch_size), desc="features", unit="batch"):
        x = normalize_fn(images_uint8[s : s + batch_size]).to(device)
        parts.append(torch.flatten(backbone(x), 1).float().cpu())
    return torch.cat(parts)


def train_linear_probe_augmented(
    backbone: nn.Module,
    train_images_uint8: torch.Tensor,
    train_labels: torch.Tensor,
    test_images_uint8: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    augment_fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    normalize_fn: Callable[[torch.Tensor], torch.Tensor],
    epochs: int = 100,
    batch_size: int = 1000,
    lr: float = 1.0,
    seed: int = 0,
    device="cpu",
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 0.0,
) -> dict:
    """The "paper" protocol: a linear classifier on a frozen backbone, with augmentation.

    The backbone (already on ``device``) is put in eval mode and left there, so
    batch-norm statistics do not move, and its features are computed under
    ``torch.no_grad``; only the classifier is trained. Every training batch
    is ``augment_fn(uint8_batch, generator)`` (on the CPU, with this function's seeded
    generator) each time it is drawn; test images go through ``normalize_fn`` only.
    Returns the same dict as ``train_linear_classifier`` with ``protocol`` "paper".
    """
    _check_options(num_classes, epochs, batch_size, lr, momentum, nesterov, weight_decay)
    _check_images(train_images_uint8, "train images")
    _check_images(test_images_uint8, "test images")
    train_y = _check_labels(train_labels, len(train_images_uint8), num_classes, "train labels")
    test_y = _check_labels(test_labels, len(test_images_uint8), num_classes, "test labels")

    backbone.eval()
    generator = torch.Generator().manual_seed(int(seed))

    @torch.no_grad()
    def batch_features(idx: torch.Tensor, idx_on_device: torch.Tensor) -> torch.Tensor:
        # The augmentation runs on the CPU, so the batch is indexed (and augmented) there.
        x = augment_fn(train_images_uint8[idx], generator).to(device)
        return torch.flatten(backbone(x), 1).float()

    test_x = extract_features(backbone, test_images_uint8, normalize_fn, batch_size, device)
    classifier, stats = _fit(
        batch_features, train_y, test_x.shape[1], num_classes, epochs, batch_size, lr, momentum,
        nesterov, weight_decay, generator, device,
    )
    stats["test_accuracy"] = _accuracy(classifier, test_x, test_y.cpu(), batch_size, device)
    stats.update(num_test=len(test_x), feature_dim=int(test_x.shape[1]), protocol="paper")
    return stats


def train_linear_probe_streamed(
    backbone: nn.Module,
    epoch_batches: Callable[[int, torch.Tensor, int], Iterator[torch.Tensor]],
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    epochs: int = 100,
    batch_size: int = 1000,
    lr: float = 1.0,
    seed: int = 0,
    device="cpu",
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 0.0,
) -> dict:
    """The "paper" protocol on streamed images: as ``train_linear_probe_augmented``, but each
    epoch's augmented training batches come from ``epoch_batches(epoch, order, batch_size)``,
    an iterator over normalised image batches on ``device`` in the given order, and the test
    features are computed beforehand."""
    _check_options(num_classes, epochs, batch_size, lr, momentum, nesterov, weight_decay)
    train_y = _check_labels(train_labels, len(train_labels), num_classes, "train labels")
    test_y = _check_labels(test_labels, len(test_features), num_classes, "test labels")
    backbone.eval()
    generator = torch.Generator().manual_seed(int(seed))
    epoch = [0]

    def epoch_features(order: torch.Tensor) -> Iterator[torch.Tensor]:
        batches = epoch_batches(epoch[0], order, batch_size)
        epoch[0] += 1
        for x in batches:
            with torch.no_grad():  # not around the yield: the caller's step needs gradients
                features = torch.flatten(backbone(x), 1).float()
            yield features

    classifier, stats = _fit(
        None, train_y, test_features.shape[1], num_classes, epochs, batch_size, lr, momentum, nesterov,
        weight_decay, generator, device, epoch_features=epoch_features,
    )
    stats["test_accuracy"] = _accuracy(classifier, test_features, test_y.cpu(), batch_size, device)
    stats.update(num_test=len(test_features), feature_dim=int(test_features.shape[1]), protocol="paper")
    return stats
