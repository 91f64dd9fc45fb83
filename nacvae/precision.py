"""Whether a network runs under bf16 autocast on its device, decided like the thread count.

``--amp`` / ``--no-amp`` (or ``$NACVAE_AMP`` = on | off | auto) decide when given. Otherwise:

- on a GPU, bf16 where it computes bf16 natively (compute capability 8.0 and newer); older
  GPUs emulate it, which is slower than float32;
- on a CPU, bf16 where the processor has native bf16 instructions (AVX512-BF16 or AMX, as
  PyTorch's CPU dispatch reports them) *and* a short timing of the workload itself, at the
  current load and thread count, shows it faster by at least ``MIN_GAIN``. A small network
  on tiny images is dominated by layout conversions and gains nothing, and on more threads
  than there are free cores the bf16 training steps were measured 1.3-3x slower than
  float32 (docs/scaling.md), so the capability alone does not decide.

The choice is recorded in the run's config.json; a resumed run keeps it. float16 with loss
scaling is not offered: its range needs a GradScaler, and the objectives and LARS would then
have to see unscaled gradients for no gain over bf16.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable, NamedTuple

import torch

from nacvae.errors import ConfigError

__all__ = ["ENV", "MIN_GAIN", "use_bf16", "has_native_bf16", "cpu_has_native_bf16", "requested_amp",
           "time_both", "resolve_amp", "Decision", "PROBE_PIXELS", "probe_images"]

ENV = "NACVAE_AMP"
# bf16 must be at least this much faster than float32 in the timing: a smaller gain is
# within the timing's noise on a shared machine, and float32 is then the safer result.
MIN_GAIN = 1.15
PROBE_REPEATS = 3


# The bf16 timing runs on the training batch, up to this many pixels per channel (at least
# 8 images): a batch of small images keeps its real size, where the gain is measured to
# depend on it (digits: 1.06x at 64 images, 1.40x at 256), and a ResNet's timing stays short.
PROBE_PIXELS = 64 * 32 * 32


def probe_images(batch: int, image_shape: tuple[int, ...]) -> int:
    """How many images the bf16 timing runs on, for a step of ``batch`` images."""
    pixels = 1
    for side in image_shape[1:]:
        pixels *= side
    return max(1, min(batch, max(8, PROBE_PIXELS // max(1, pixels))))


class Decision(NamedTuple):
    """Whether bf16 autocast is on, and one phrase saying what decided it."""

    amp: bool
    why: str


def use_bf16(device_type: str, requested: bool | None, native_bf16: bool, gain: float | None = None) -> bool:
    """The decision itself: an explicit request wins; by default bf16 on a CUDA device with
    native bf16, and on a CPU with native bf16 whose measured ``gain`` (float32 seconds /
    bf16 seconds) is at least ``MIN_GAIN``; float32 everywhere else."""
    if requested is not None:
        return bool(requested)
    if not native_bf16:
        return False
    if device_type == "cuda":
        return True
    if device_type == "cpu":
        return gain is not None and gain >= MIN_GAIN
    return False


def cpu_has_native_bf16() -> bool:
    """True where the CPU has bf16 instructions (AVX512-BF16 or AMX tiles)."""
    probe = getattr(torch, "cpu", None)
    checks = [getattr(probe, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(check is not None for check in checks):
        try:
            return any(bool(check()) for check in checks if check is not None)
        except RuntimeError:  # pragma: no cover - a build without the CPU capability queries
            pass
    try:  # pragma: no cover - older PyTorch: the kernel's flags
        with open("/proc/cpuinfo") as f:
            flags = f.read().split()
    except OSError:  # pragma: no cover
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags  # pragma: no cover


def has_native_bf16(device: torch.device) -> bool:
    """True for a device that computes in bf16 without emulation."""
    if device.type == "cpu":
        return cpu_has_native_bf16()
    if device.type != "cuda":
        return False
    with torch.cuda.device(device):
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # PyTorch before 2.3 cannot be asked; native bf16 starts with Ampere
            return torch.cuda.get_device_capability(device)[0] >= 8


def requested_amp(requested: bool | None, environ=None) -> tuple[bool | None, str]:
    """(``--amp``/``--no-amp``, else ``$NACVAE_AMP``; None for auto, and where it was decided)."""
    if requested is not None:
        return bool(requested), "--amp" if requested else "--no-amp"
    environ = os.environ if environ is None else environ
    text = environ.get(ENV, "").strip().lower()
    if text in ("", "auto"):
        return None, "auto"
    if text in ("1", "on", "true", "yes", "bf16"):
        return True, f"${ENV}={text}"
    if text in ("0", "off", "false", "no", "fp32", "float32"):
        return False, f"${ENV}={text}"
    raise ConfigError(f"${ENV} must be on, off or auto, not {environ[ENV]!r}.")


def time_both(step: Callable[[bool], None], repeats: int = PROBE_REPEATS,
              clock: Callable[[], float] = time.perf_counter) -> tuple[float, float]:
    """(float32 seconds, bf16 seconds): the median of ``repeats`` timed calls of
    ``step(amp)`` each, after one untimed call of each, interleaved so that a change of load
    during the timing hits both alike."""
    step(False)
    step(True)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for amp in (False, True):
            start = clock()
            step(amp)
            times[amp].append(clock() - start)
    return statistics.median(times[False]), statistics.median(times[True])


def resolve_amp(device: torch.device, requested: bool | None,
                probe: Callable[[], Callable[[bool], None]] | None = None, environ=None,
                resumed: dict | None = None) -> Decision:
    """bf16 autocast on ``device``, given ``--amp/--no-amp`` (None: not given). A resumed
    run (``resumed``: its config.json) keeps the choice it recorded. Otherwise, on a CPU with
    native bf16, ``probe()`` builds ``step(amp)`` (one step of the workload, under bf16
    autocast when ``amp``), which is timed in both precisions; it is built only when the
    timing is needed, and without it the CPU stays float32."""
    wanted, source = requested_amp(requested, environ)
    if wanted is not None:
        return Decision(wanted, source)
    if resumed is not None and isinstance(resumed.get("amp"), bool):
        return Decision(resumed["amp"], resumed.get("amp_decided_by") or "the resumed run's choice")
    if device.type not in ("cuda", "cpu"):
        return Decision(False, f"no bf16 default on {device.type}")
    native = has_native_bf16(device)
    if not native:
        return Decision(False, f"the {device.type.upper() if device.type == 'cpu' else 'GPU'} has no native bf16")
    if device.type == "cuda":
        return Decision(True, "the GPU computes bf16 natively")
    if probe is None:
        return Decision(False, "not timed")
    fp32, bf16 = time_both(probe())
    gain = fp32 / max(bf16, 1e-9)
    amp = use_bf16("cpu", None, True, gain)
    return Decision(amp, f"native bf16, measured {gain:.2f}x float32's speed at the current load "
                         f"({'at least' if amp else 'under'} {MIN_GAIN}x)")
