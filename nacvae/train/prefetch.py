"""The next step's inputs, made in a background thread while this step trains.

On a CPU the model's step on two or more threads leaves part of a core idle (its operations
do not scale perfectly), and the batched augmentation, run one thread wide, fits in that
idle time: side by side the full step on CIFAR-sized images moved from 87 % to 99 % of the
model's own speed on a 2-core CPU (docs/scaling.md). The background thread computes on one
thread of its own (under OpenMP each thread has its own intra-op thread count), so the
model keeps its threads.

Each item is ``make(step)``, a function of the step alone (the step's seeded generator,
its rows, its views), made strictly in step order, one step ahead; the augmentation gives
the same values on any thread count, so a run gives the same numbers with and without it.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable

import torch

__all__ = ["Prefetch", "worth_prefetching"]


def worth_prefetching(device: torch.device, streamed: bool) -> bool:
    """On a CPU with two or more threads, for in-memory data (streamed data has its own
    decoding workers, and on a GPU the augmentation is already asynchronous)."""
    return device.type == "cpu" and not streamed and torch.get_num_threads() >= 2


class Prefetch:
    """Iterate over ``make(step)`` for ``steps``; each is made one step ahead in a thread.

    An exception in ``make`` is raised by the ``next`` that would have returned its item;
    ``close`` (also on leaving a ``with`` block) stops the thread.
    """

    _DONE = object()

    def __init__(self, make: Callable[[int], Any], steps: Iterable[int], threads: int = 1) -> None:
        self._make, self._steps, self._threads = make, iter(steps), threads
        self._items: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        # torch keeps one process-wide thread count that a thread adopts on its first parallel
        # operation, besides each thread's own: the caller's is fixed first, the new thread
        # takes its own, and then the process-wide value is set back to the caller's.
        caller = torch.get_num_threads()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="nacvae-prefetch", daemon=True)
        self._thread.start()
        ready.wait()
        torch.set_num_threads(caller)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, ready: threading.Event) -> None:
        torch.set_num_threads(self._threads)
        torch.get_num_threads()  # adopted now, before the caller sets the process-wide count back
        ready.set()
        try:
            for step in self._steps:
                if self._stop.is_set() or not self._put((True, self._make(step))):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((False, exc))
            return
        self._put((True, self._DONE))

    def __iter__(self) -> "Prefetch":
        return self

    def __next__(self):
        ok, item = self._items.get()
        if not ok:
            self.close()
            raise item
        if item is self._DONE:
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def __enter__(self) -> "Prefetch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
