"""Ctrl-C that cannot be lost.

Python turns SIGINT into a KeyboardInterrupt at whatever line runs; when that line is inside
a C extension's import (numpy, scipy) the library can swallow it and carry on, or fail later
with an unrelated ImportError. The handler here also remembers the signal, so the training
loops stop at their next step and the command line reports an interruption, not that error.
"""

from __future__ import annotations

_pending = False


def on_sigint(signum, frame) -> None:
    """A SIGINT handler: remember the interruption, then raise it as Python's own does."""
    global _pending
    _pending = True
    raise KeyboardInterrupt


def pending() -> bool:
    """Whether a SIGINT has arrived since this process started."""
    return _pending


def check() -> None:
    """Raise KeyboardInterrupt if a SIGINT arrived and was swallowed on its way."""
    if _pending:
        raise KeyboardInterrupt
