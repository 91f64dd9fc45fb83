"""What the pretraining and VAE loops share: the seeded epoch order, values summed on the
device between log steps, the checkpoint of the run and its non-finite guard, and the
TensorBoard writer and progress display. Each loop states only its step and its records.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from nacvae import interrupts
from nacvae.checkpoint import save_checkpoint
from nacvae.errors import TrainingError
from nacvae.progress import on_terminal
from nacvae.seeds import SHUFFLE_STREAM, step_seed


@dataclass
class RunState:
    """What both kinds of run have once opened: the folder, optimiser, schedule in steps, the
    checkpoint and the run's config.json record (which the loop updates with its status)."""

    out: Path
    optimizer: torch.optim.Optimizer
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    start_step: int
    checkpoint_every: int
    checkpoint: "RunCheckpoint"
    run_config: dict[str, Any]


class EpochOrder:
    """Each epoch's permutation of the ``n`` training rows, seeded by (seed, epoch): the same
    in every process and in a resumed run."""

    def __init__(self, n: int, seed: int, device: torch.device, steps_per_epoch: int, batch_size: int) -> None:
        self.n, self.seed, self.device = n, seed, device
        self.steps_per_epoch, self.batch_size = steps_per_epoch, batch_size
        self._epoch: int | None = None
        self._perm: torch.Tensor | None = None

    def rows(self, step: int, offset: int = 0, size: int | None = None) -> torch.Tensor:
        """The rows of ``step``'s batch from ``offset`` on (a process's share under torchrun)."""
        epoch, i = divmod(step, self.steps_per_epoch)
        if self._epoch != epoch:
            g = torch.Generator().manual_seed(step_seed(self.seed, epoch, stream=SHUFFLE_STREAM))
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g).to(self.device)
        first = i * self.batch_size + offset
        return self._perm[first:first + (self.batch_size if size is None else size)]


class Window:
    """Per-step values summed on the device and read only at log steps, so that a step costs
    no host-device synchronisation; also whether every loss of the window was finite."""

    def __init__(self, width: int, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.sums = torch.zeros(width, dtype=dtype, device=device)
        self.finite = torch.ones((), dtype=torch.bool, device=device)
        self.steps, self.started, self.excluded = 0, time.perf_counter(), 0.0

    def add(self, values: torch.Tensor, loss: torch.Tensor) -> None:
        self.sums += values
        self.finite &= torch.isfinite(loss)
        self.steps += 1

    def images_per_s(self, batch_size: int) -> float:
        """Training images per second of the window, leaving out ``exclude``d time."""
        return self.steps * batch_size / max(time.perf_counter() - self.started - self.excluded, 1e-9)

    def exclude(self, seconds: float) -> None:
        """Time spent inside the window on something other than training (an evaluation, a
        checkpoint), kept out of its images per second."""
        self.excluded += seconds

    def reset(self) -> None:
        self.sums.zero_()
        self.steps, self.started, self.excluded = 0, time.perf_counter(), 0.0


# The share of a run's time its automatic checkpoints may take (VAE runs, checkpoint_every=0).
SAVE_BUDGET = 0.02


class RunCheckpoint:
    """The run's ``checkpoints/last.pt``: saves the training state and knows the last step saved,
    which the non-finite guard names."""

    def __init__(self, path: Path, kind: str, meta: dict[str, Any], config: dict[str, Any], model: torch.nn.Module,
                 saved_step: int | None = None, **state: Any) -> None:
        self.path, self.kind, self.meta, self.config, self.model = path, kind, meta, config, model
        self.state = state  # optimiser, scheduler: objects with a state dict
        self.saved_step = saved_step
        self.cost, self.finished = 0.0, time.perf_counter()  # the last save's seconds, and when it ended

    def save(self, step: int, complete: bool = False) -> float:
        """Write the checkpoint; returns the seconds it took."""
        started = time.perf_counter()
        model = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        extra = {name: obj.state_dict() for name, obj in self.state.items()}
        save_checkpoint(self.path, self.kind, self.meta, self.config, model, step, complete, **extra)
        self.saved_step = step
        self.finished = time.perf_counter()
        self.cost = self.finished - started
        return self.cost

    def affordable(self, budget: float = SAVE_BUDGET) -> bool:
        """Whether a save now keeps saving under ``budget`` of the run's time: the time since
        the last save is at least the last save's cost / budget (a first save always is)."""
        return (time.perf_counter() - self.finished) * budget >= self.cost

    def non_finite(self, done: int, nothing_kept: str) -> TrainingError:
        kept = (f"the last good checkpoint (step {self.saved_step}) is kept in {self.path.parent}"
                if self.saved_step is not None else nothing_kept)
        return TrainingError(f"The loss became non-finite before step {done}; {kept}.")


def steps(start: int, total: int) -> Iterator[int]:
    """The steps still to run; each first delivers a Ctrl-C swallowed during start-up."""
    for step in range(start, total):
        interrupts.check()
        yield step


def is_log_step(done: int, total: int, log_every: int, checkpoint_every: int) -> bool:
    return done % log_every == 0 or done % checkpoint_every == 0 or done == total


_LABELS = {"img_s": "images/s"}  # the bar's short names, spelt out in a log line


class StepProgress:
    """The loop's progress: a bar when stderr is a terminal, else one plain line per log step
    (a log file or a pipe would otherwise fill with the bar's carriage-return redraws);
    nothing at all when off (``--quiet``, or not rank 0)."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self._bar = (tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr)
                     if enabled and on_terminal() else None)

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def logged(self, done: int, **values: str) -> None:
        """A log step's values, shown beside the bar or as the line of step ``done``."""
        if self._bar is not None:
            self._bar.set_postfix(values)
        elif self.enabled:
            shown = "  ".join(f"{_LABELS.get(name, name)} {value}" for name, value in values.items())
            print(f"step {done}/{self.total}  {shown}", file=sys.stderr, flush=True)

    def write(self, message: str) -> None:
        """A message on stderr that leaves the bar intact (shown even when the bar is off)."""
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def events_and_bar(out: Path, total: int, start: int, resume: bool, writer: bool = True,
                   bar: bool = True) -> Iterator[tuple[SummaryWriter | None, StepProgress]]:
    """The run's TensorBoard writer (None when ``writer`` is off: not rank 0) and its progress
    (``StepProgress``, off unless ``bar``), both closed however the loop ends; a resumed run's
    events after ``start`` are purged."""
    events = SummaryWriter(str(out / "tb"), purge_step=start if resume else None) if writer else None
    progress = StepProgress(total, start, bar)
    try:
        yield events, progress
    finally:
        progress.close()
        if events is not None:
            events.close()
