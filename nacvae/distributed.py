"""One training spread over several processes started by ``torchrun``.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (plus MASTER_ADDR / MASTER_PORT) in each
process's environment. :func:`process_group` joins the default process group (NCCL for
CUDA, gloo for CPU) and gives each process its device, ``cuda:LOCAL_RANK`` on a GPU
machine. Every helper here is a no-op in a single process, so the training code calls them
unconditionally.

Gathering rows across processes: :func:`gather_with_grad` concatenates every rank's rows in
rank order and sends gradients back to the rank that produced them, summed over the ranks
whose losses used them. Summing is what makes data-parallel training match one process:
with W ranks each averaging its own rows, the single-process loss is (1/W) sum_r loss_r;
rank s's backward yields d(sum_r loss_r)/d(its activations) and DistributedDataParallel
averages the W parameter gradients, which gives d[(1/W) sum_r loss_r]/d(parameters).
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Callable, Iterator, TypeVar

import torch
import torch.distributed as dist

from nacvae import errors
from nacvae.errors import ConfigError, NacvaeError, TrainingError

T = TypeVar("T")

__all__ = [
    "DEFAULT_TIMEOUT_MINUTES", "ProcessLost", "agree", "all_reduce_sum", "barrier", "collective_timeout",
    "gather_no_grad", "gather_with_grad", "is_distributed", "is_main", "launched_by_torchrun", "local_rank",
    "lost_process_error", "lost_processes_as_error", "process_group", "rank", "world_size",
]

# How long a process waits in one collective before the job is aborted. NCCL's own default
# (10 minutes) is too short for rank 0 to download or decode a large dataset while the
# other ranks wait for it in `agree`.
DEFAULT_TIMEOUT_MINUTES = 30.0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Size of the process group; before it exists, what torchrun announced (else 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1")) if launched_by_torchrun() else 1


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if launched_by_torchrun() else 0


def is_main() -> bool:
    """Rank 0, the one process that writes files and prints."""
    return rank() == 0


def _pick_device(requested: torch.device) -> torch.device:
    if requested.type != "cuda":
        return requested
    if requested.index is not None:
        raise ConfigError(
            f"--device {requested} names one GPU, but under torchrun each process uses cuda:LOCAL_RANK; "
            "pass --device cuda or auto."
        )
    count = torch.cuda.device_count()
    # The process count of this machine is compared too, so that rank 0 fails (and reports)
    # with the others; with --virtual-local-rank each process sees one GPU as cuda:0.
    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if local_rank() >= count or (count > 1 and per_machine > count):
        raise ConfigError(
            f"torchrun started more processes on this machine than it has GPUs ({count}); lower --nproc-per-node."
        )
    return torch.device("cuda", local_rank())


def collective_timeout(minutes: float | None = None) -> timedelta:
    """The collectives' timeout for ``--dist-timeout MINUTES`` (None: the default)."""
    if minutes is None:
        minutes = DEFAULT_TIMEOUT_MINUTES
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not (
            math.isfinite(minutes) and minutes > 0):
        raise ConfigError(f"--dist-timeout must be a positive number of minutes, got {minutes!r}.")
    return timedelta(minutes=minutes)


@contextmanager
def process_group(requested: torch.device, timeout: timedelta | None = None) -> Iterator[torch.device]:
    """Join the process group when torchrun started this process; yields this process's device.

    ``requested`` is the device the user asked for (``cuda`` without an index, or ``cpu``).
    ``timeout`` bounds every collective of the group (default ``DEFAULT_TIMEOUT_MINUTES``).
    A group that already exists (created by the caller) is used and left alone; one created
    here is destroyed on exit.
    """
    if not launched_by_torchrun():
        yield requested
        return
    if dist.is_available() and dist.is_initialized():
        device = _pick_device(requested)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        yield device
        return
    if not dist.is_available():
        raise ConfigError("This PyTorch build has no torch.distributed, so it cannot run under torchrun.")
    device = _pick_device(requested)
    timeout = timeout if timeout is not None else collective_timeout()
    if device.type == "cuda":
        torch.cuda.set_device(device)
        try:
            dist.init_process_group("nccl", timeout=timeout, device_id=device)  # binds the GPU (PyTorch >= 2.3)
        except TypeError:
            dist.init_process_group("nccl", timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


class _GatherRows(torch.autograd.Function):
    """All-gather along dim 0 (equal sizes); backward sums each rank's gradient and keeps
    the slice of this rank's own rows."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        ctx.rows = t.shape[0]
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start:start + ctx.rows]


def gather_with_grad(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(every rank's ``t`` concatenated in rank order, offset of this rank's rows), with
    gradients flowing back to each rank's own rows. Every rank must pass the same shape."""
    if not is_distributed():
        return t, 0
    return _GatherRows.apply(t), dist.get_rank() * t.shape[0]


@torch.no_grad()
def gather_no_grad(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """As :func:`gather_with_grad`, detached (for queue keys and statistics)."""
    if not is_distributed():
        return t, 0
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.detach().contiguous())
    return torch.cat(parts, dim=0), dist.get_rank() * t.shape[0]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over the ranks (a new tensor; ``t`` itself in a single process)."""
    if not is_distributed():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def _shared_error(error: NacvaeError | None) -> None:
    """Raise on every rank the first user error any rank met (rank order)."""
    found: list = [None] * dist.get_world_size()
    dist.all_gather_object(found, None if error is None else (type(error).__name__, str(error)))
    first = next((f for f in found if f is not None), None)
    if first is None:
        return
    if error is not None:
        raise error
    cls = getattr(errors, first[0], NacvaeError)
    raise (cls if isinstance(cls, type) and issubclass(cls, NacvaeError) else NacvaeError)(first[1])


def agree(fn: Callable[[], T], main_first: bool = False) -> T:
    """Call ``fn()`` on every rank; a user error (NacvaeError) raised on any rank is raised on
    all of them, so that none is left waiting in a later collective.

    With ``main_first`` rank 0 calls ``fn`` before the others (for example to download a
    dataset once).
    """
    if not is_distributed():
        return fn()
    result: list = [None]
    error: list[NacvaeError | None] = [None]

    def attempt() -> None:
        try:
            result[0] = fn()
        except NacvaeError as exc:
            error[0] = exc

    if main_first:
        if is_main():
            attempt()
        _shared_error(error[0])
        if not is_main():
            attempt()
    else:
        attempt()
    _shared_error(error[0])
    return result[0]


class ProcessLost(TrainingError):
    """Another process of the job died or stopped answering in a collective. Every process
    that sees it reports it, not only rank 0: rank 0 may be the lost one."""


# A collective's RuntimeError comes from the backend when it is a DistError or names gloo or
# NCCL (gloo's name the source file, such as gloo/transport/tcp/pair.cc); it means the other
# process is gone (killed, its machine down, the network cut) unless it timed out, which
# means silent (SIGSTOP, a hung machine).
_BACKEND = ("gloo", "nccl", "connection reset by peer", "connection closed by peer")
_SILENT = ("timed out", "timeout")


def lost_process_error(exc: BaseException, timeout: timedelta) -> str | None:
    """What happened, when a collective failed with ``exc`` because another process is gone
    or silent ("Rank 1 of the 2 processes was lost"); None for any other error."""
    if not isinstance(exc, RuntimeError) or not is_distributed():
        return None
    text = str(exc).lower()
    if not (isinstance(exc, dist.DistError) or any(marker in text for marker in _BACKEND)):
        return None
    world = dist.get_world_size()
    # With two processes the lost one is the other; with more, neither gloo nor NCCL says
    # which (gloo names an address and port, not a rank).
    who = f"Rank {1 - dist.get_rank()} of the 2 processes" if world == 2 else "Another process of the job"
    if any(marker in text for marker in _SILENT):
        return f"{who} did not answer for {timeout.total_seconds() / 60:g} minutes (--dist-timeout)"
    return f"{who} was lost (it was killed, or its machine or network failed)"


@contextmanager
def lost_processes_as_error(timeout: timedelta, next_step: Callable[[], str]) -> Iterator[None]:
    """Around the training inside :func:`process_group`: a collective that fails because
    another process is gone or silent becomes one :class:`ProcessLost` sentence instead of
    the backend's traceback. ``next_step()`` (called after the failure, once the block has
    cleaned up) says what to do, for example the resume command."""
    try:
        yield
    except RuntimeError as exc:
        what = lost_process_error(exc, timeout)
        if what is None:
            raise
        raise ProcessLost(f"{what}, so training stopped; {next_step()}.") from exc
