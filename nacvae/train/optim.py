"""Optimisers (LARS, SGD, Adam) and the per-step learning-rate schedules: linear warm-up, then
cosine decay to 0 or steps of x0.1 (the hashing releases' schedules)."""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch.optim import Optimizer

from nacvae.errors import ConfigError

OPTIMIZERS = ("lars", "sgd", "adam")


class LARS(Optimizer):
    """SGD with momentum whose step for each parameter is scaled by a layer-wise trust ratio.

    g = grad + weight_decay * w;  update = momentum * update + lr * trust * g;  w -= update,
    with trust = eta * ||w|| / ||g|| when both norms are non-zero, else 1 (SimCLR's convention).
    As in the paper's runs the decay and the trust ratio apply to every parameter
    (biases and norm layers included) unless a parameter group sets ``lars_exclude=True``.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 1e-6,
                 eta: float = 1e-3) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # One batch of multi-tensor (_foreach_) operations per device and dtype instead
            # of a Python loop of small kernels per parameter; the arithmetic is the same.
            batches: dict[tuple, list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is not None:
                    batches.setdefault((p.device, p.dtype), []).append(p)
            for params in batches.values():
                self._update(params, group)
        return loss

    def _update(self, params: list[torch.Tensor], group: dict) -> None:
        grads = [p.grad for p in params]  # read only: every step below makes new tensors
        if group["weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        if not group["lars_exclude"]:
            w_norm = torch.stack(torch._foreach_norm(params))
            g_norm = torch.stack(torch._foreach_norm(grads))
            ok = (w_norm > 0) & (g_norm > 0)
            trust = torch.where(ok, group["eta"] * w_norm / g_norm.clamp_min(1e-30), torch.ones_like(w_norm))
            grads = torch._foreach_mul(grads, list(trust.unbind(0)))
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            bufs.append(state["momentum_buffer"])
        torch._foreach_mul_(bufs, group["momentum"])
        torch._foreach_add_(bufs, grads, alpha=group["lr"])
        torch._foreach_sub_(params, bufs)


def build_optimizer(name: str, params: Iterable, lr: float, weight_decay: float) -> Optimizer:
    if lr <= 0:
        raise ConfigError(f"The learning rate must be positive, got {lr}.")
    if name == "lars":
        return LARS(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"Unknown optimiser '{name}'; choose one of {', '.join(OPTIMIZERS)}.")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate multiplier: linear warm-up from 1/warmup to 1, then cosine decay to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps_down(step: int, total_steps: int, warmup_steps: int, drops: tuple[float, ...]) -> float:
    """Learning-rate multiplier: linear warm-up from 1/warmup to 1, then 0.1 ** (the number
    of ``drops``, fractions of the run, that step has reached: round(f * total_steps) <= step).
    No drops is a constant rate."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return 0.1 ** sum(step >= round(f * total_steps) for f in drops)


def build_scheduler(optimizer: Optimizer, total_steps: int, warmup_steps: int, schedule: str = "cosine",
                    drops: tuple[float, ...] = ()) -> torch.optim.lr_scheduler.LambdaLR:
    if schedule == "step":
        drops = tuple(drops)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_steps_down(s, total_steps, warmup_steps, drops))
    if schedule != "cosine":
        raise ConfigError(f"Unknown learning-rate schedule '{schedule}'; choose cosine or step.")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total_steps, warmup_steps))
