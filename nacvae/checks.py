"""Checks of option values, shared by every configuration: each failure is a ConfigError
naming the option as the user typed it (``--name``)."""

from __future__ import annotations

import math
import numbers
from typing import Any

from nacvae.errors import ConfigError

# The largest seed torch.manual_seed takes.
MAX_SEED = 2**63 - 1


def check_int(name: str, value: Any, least: int = 1, optional: bool = False, prefix: str = "--") -> None:
    """``--name`` must be an integer of at least ``least`` (or None when ``optional``); NumPy
    integers count. ``prefix`` "" names a function's parameter rather than an option."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{prefix}{name} must be a whole number, got {value!r}.")
    if value < least:
        need = "must not be negative" if least == 0 else f"must be at least {least}"
        raise ConfigError(f"{prefix}{name} {need}, got {value!r}.")


def check_real(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False,
               high_open: bool = True, optional: bool = False) -> None:
    """``--name`` must be a finite number in the interval from ``low`` to ``high``."""
    if optional and value is None:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    inside = number and math.isfinite(value) and (value > low if low_open else value >= low) and (
        value < high if high_open else value <= high)
    if not inside:
        if high == math.inf:
            want = f"a finite number {'above' if low_open else 'of at least'} {low:g}"
        else:
            want = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"--{name} must be {want}, got {value!r}.")


def check_flag(name: str, value: Any) -> None:
    """``--name`` is an on/off option: its value must be a bool."""
    if not isinstance(value, bool):
        raise ConfigError(f"--{name} must be on or off, got {value!r}.")


def check_flags(cfg: Any, *names: str) -> None:
    """Each of ``cfg``'s fields ``names`` must be a bool (an on/off option)."""
    for name in names:
        check_flag(name.replace("_", "-"), getattr(cfg, name))


def check_seed(value: Any) -> None:
    check_int("seed", value, 0)
    if value > MAX_SEED:
        raise ConfigError(f"--seed must be at most {MAX_SEED}, got {value}.")
