"""A study's stages as a small dependency graph, run in this process or in worker processes.

A stage is a named call of a module-level function with its arguments and the stages it
waits for. With one job the stages run here, one after another, in the order given. With
more, each runs in one of ``jobs`` spawned worker processes as soon as the stages it waits for
are done (the earliest-listed ready stage first), and every worker computes on
``threads_per_job`` threads: two pretrainings on one core each keep two cores busy, where one
on two cores leaves much of the second idle on a small network. A stage's numbers depend only
on its arguments and its thread count, so ``jobs`` changes the wall time and nothing else:
two jobs of one thread give exactly the results of one job on one thread.

Stages must not share an output folder; their results travel back pickled.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from nacvae.errors import ConfigError

__all__ = ["Stage", "run_stages", "choose_jobs", "parse_jobs", "StagePool"]


@dataclass(frozen=True)
class Stage:
    name: str
    fn: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    after: tuple[str, ...] = ()
    announce: str | None = None  # logged when the stage starts


def parse_jobs(value) -> int | None:
    """``--jobs``: a positive integer, or None for auto."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--jobs must be a positive integer or 'auto', not {value!r}.") from None
    if n < 1:
        raise ConfigError(f"--jobs must be a positive integer or 'auto', not {value!r}.")
    return n


def choose_jobs(requested: int | None, device_type: str, threads: int, width: int | None = None) -> tuple[int, int]:
    """(jobs, threads per job). Auto: on a CPU, one job per thread this process was given (the
    free cores, nacvae/threads.py), but no more than ``width`` (the stages that can run at
    once), the threads shared among them; on a GPU one job, since the stages would share the
    device. ``requested`` jobs share the threads, at least one each."""
    if requested is None:
        jobs = threads if device_type == "cpu" else 1
        if width is not None:
            jobs = max(1, min(jobs, width))
    else:
        jobs = requested
    return jobs, max(1, threads // jobs)


def _start_worker(threads: int) -> None:
    from nacvae.threads import apply_threads

    apply_threads(threads)


class StagePool:
    """Worker processes kept for a whole study (each pays torch's import once)."""

    def __init__(self, jobs: int, threads_per_job: int):
        self.jobs, self.threads_per_job = jobs, threads_per_job
        self._executor: ProcessPoolExecutor | None = None

    def executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            import multiprocessing

            # spawn: a forked copy of a process that has started torch's thread pools can hang.
            self._executor = ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_start_worker, initargs=(self.threads_per_job,))
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> "StagePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check(stages: list[Stage]) -> None:
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names repeat: {names}")
    seen: set[str] = set()
    for s in stages:  # every stage waits only for stages listed before it: no cycles, a serial order
        missing = [a for a in s.after if a not in seen]
        if missing:
            raise ValueError(f"stage {s.name} waits for {missing}, which are not listed before it")
        seen.add(s.name)


def run_stages(stages: list[Stage], pool: StagePool | None = None, log: Callable[[str], None] = print,
               on_done: Callable[[str, Any], None] | None = None) -> dict[str, Any]:
    """Run ``stages``; returns name -> result. ``on_done(name, result)`` is called in this
    process as each finishes. Without a pool of more than one job they run here in order.
    If a stage fails, no further stage starts, the running ones finish, and its error is
    raised."""
    _check(stages)
    results: dict[str, Any] = {}

    def finish(name: str, result: Any) -> None:
        results[name] = result
        if on_done is not None:
            on_done(name, result)

    if pool is None or pool.jobs <= 1:
        for s in stages:
            if s.announce:
                log(s.announce)
            finish(s.name, s.fn(**s.kwargs))
        return results

    executor = pool.executor()
    waiting = list(stages)
    running: dict[Future, Stage] = {}
    error: BaseException | None = None
    try:
        while waiting or running:
            if error is None:
                for s in [s for s in waiting if all(a in results for a in s.after)]:
                    if len(running) >= pool.jobs:
                        break
                    waiting.remove(s)
                    if s.announce:
                        log(s.announce)
                    running[executor.submit(s.fn, **s.kwargs)] = s
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                s = running.pop(future)
                try:
                    result = future.result()
                except BaseException as exc:  # the first failure is raised once the others stop
                    error = error or exc
                    continue
                if error is None:
                    finish(s.name, result)
    except BaseException:
        for future in running:
            future.cancel()
        pool.close()
        raise
    if error is not None:
        raise error
    return results

