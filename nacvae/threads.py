"""How many CPU threads nacvae's compute uses, chosen from the cores that are free.

A torch (OpenMP) thread pool larger than the cores that are actually free is the worst
case on a shared machine: at every parallel region the threads wait at a barrier for the
one that lost its core, spinning meanwhile, and a batched augmentation that runs at 17k
views/s alone drops below 1k. So the default is the number of cores this process may use
(``os.sched_getaffinity``) minus the cores other processes keep busy, measured over a
short window of ``/proc/stat``, at least one. Whatever is chosen, idle pool threads sleep
instead of spinning (``OMP_WAIT_POLICY=PASSIVE``) unless the environment says otherwise,
so a load that starts later costs little. docs/scaling.md gives the measurements.

This module imports neither torch nor numba: the command line decides before torch
starts its OpenMP runtime, which reads the wait policy once, at start-up.
"""

from __future__ import annotations

import os
import sys
import time

from nacvae.errors import ConfigError

ENV = "NACVAE_THREADS"
SAMPLE_SECONDS = 0.25


def usable_cores() -> list[int]:
    """The CPUs this process may run on (its affinity mask, e.g. under taskset or cgroups)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def _cpu_times(cores: list[int]) -> tuple[float, float] | None:
    """(busy, total) jiffies of ``cores`` from /proc/stat, or None where it is unreadable."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cores}
    busy = total = 0.0
    seen = 0
    for line in lines:
        fields = line.split()
        if not fields or fields[0] not in wanted:
            continue
        # user nice system idle iowait irq softirq steal (guest time is inside user)
        values = [float(v) for v in fields[1:9]]
        idle = values[3] + (values[4] if len(values) > 4 else 0.0)
        total += sum(values)
        busy += sum(values) - idle
        seen += 1
    return (busy, total) if seen else None


def busy_cores(cores: list[int] | None = None, seconds: float = SAMPLE_SECONDS) -> float:
    """How many of ``cores`` other processes keep busy, averaged over ``seconds``.

    Measured as the busy share of the cores in /proc/stat minus this process's own CPU
    time over the same window. Where /proc/stat is missing (macOS, Windows) the 1-minute
    load average is used, which cannot tell this process apart from the others.
    """
    cores = usable_cores() if cores is None else cores
    before = _cpu_times(cores)
    if before is None:
        try:
            return min(float(len(cores)), os.getloadavg()[0])
        except (AttributeError, OSError):
            return 0.0
    own_before, start = _own_cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    after = _cpu_times(cores)
    own = _own_cpu_seconds() - own_before
    elapsed = max(time.monotonic() - start, 1e-3)  # a sleep can overrun on a busy machine
    if after is None or after[1] <= before[1]:
        return 0.0
    busy_share = (after[0] - before[0]) / (after[1] - before[1])
    # Jiffies are split over the cores, so busy_share * cores is the number of busy cores.
    others = busy_share * len(cores) - own / elapsed
    return min(float(len(cores)), max(0.0, others))


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def free_cores_threads(cores: int, busy: float, processes: int = 1) -> int:
    """The rule: the free cores (``cores - busy``, rounded to the nearest whole core),
    shared equally by the ``processes`` of this job on the machine, at least one each."""
    free = int(cores - busy + 0.5)
    return max(1, free // max(1, processes))


def parse_threads(value) -> int | None:
    """A thread count from an option or the environment: a positive integer, or None for
    'auto' and empty."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        text = str(value).strip().lower()
        if text in ("", "auto"):
            return None
        try:
            n = int(text)
        except ValueError:
            raise ConfigError(f"The thread count must be a positive integer or 'auto', not {value!r}.") from None
    if n < 1:
        raise ConfigError(f"The thread count must be a positive integer or 'auto', not {value!r}.")
    return n


def choose_threads(requested=None, environ=None) -> tuple[int, str]:
    """(threads, why): ``requested`` (``--threads``), else $NACVAE_THREADS, else an
    explicit $OMP_NUM_THREADS, else the free cores shared by torchrun's local processes."""
    environ = os.environ if environ is None else environ
    n = parse_threads(requested)
    if n is not None:
        return n, "--threads"
    n = parse_threads(environ.get(ENV))
    if n is not None:
        return n, f"${ENV}"
    omp = environ.get("OMP_NUM_THREADS", "").strip()
    # A value nacvae wrote itself after measuring the load is not a user's choice: measure again.
    if omp.isdigit() and int(omp) > 0 and omp != environ.get(AUTO_MARK):
        return int(omp), "$OMP_NUM_THREADS"
    cores = usable_cores()
    processes = parse_threads(environ.get("LOCAL_WORLD_SIZE")) or 1
    busy = busy_cores(cores)
    n = free_cores_threads(len(cores), busy, processes)
    return n, f"{len(cores)} usable cores, {busy:.1f} busy with other work, {processes} process(es)"


# Set beside OMP_NUM_THREADS when the count came from the measured load (children inherit both).
AUTO_MARK = "NACVAE_AUTO_THREADS"


def apply_threads(n: int, environ=None, auto: bool = False) -> None:
    """Use ``n`` threads in torch, MKL, OpenMP and numba, before or after they start.

    Before torch is imported the environment decides (its OpenMP runtime reads it once);
    afterwards torch's intra-op pool is resized. Child processes inherit the environment.
    """
    environ = os.environ if environ is None else environ
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        if name == "NUMBA_NUM_THREADS" and "numba" in sys.modules:
            continue  # numba's pool size is fixed once it is imported; set_num_threads below
        environ[name] = str(n)
    if auto:
        environ[AUTO_MARK] = str(n)
    else:
        environ.pop(AUTO_MARK, None)
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    if "numba" in sys.modules:
        numba = sys.modules["numba"]
        try:
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        except (AttributeError, ValueError):  # pragma: no cover - an old or odd numba
            pass


def configure_threads(requested=None) -> tuple[int, str]:
    """Choose and apply the thread count; returns (threads, why)."""
    n, why = choose_threads(requested)
    apply_threads(n, auto=why not in ("--threads", f"${ENV}", "$OMP_NUM_THREADS"))
    return n, why
