"""Progress bars for the long loops of the evaluations.

Off by default, so that the Python API prints nothing; the command line turns them on for
one command (``progress_bars(True)``) unless given ``--quiet`` or ``--json``. Even then a
bar is drawn only when stderr is a terminal (:func:`on_terminal`), so logs and pipes stay
clean; the training loops follow the same rule (``nacvae.train.loop``).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from contextvars import ContextVar

_enabled: ContextVar[bool] = ContextVar("nacvae_progress", default=False)


@contextmanager
def progress_bars(enabled: bool):
    """Within the block, :func:`bar` draws (when stderr is a terminal)."""
    token = _enabled.set(bool(enabled))
    try:
        yield
    finally:
        _enabled.reset(token)


def on_terminal() -> bool:
    """Whether stderr is a terminal: the one condition under which any bar is drawn."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def shown() -> bool:
    """Whether a bar started now would be drawn."""
    return _enabled.get() and on_terminal()


def bar(iterable=None, total: int | None = None, desc: str | None = None, unit: str = "it"):
    """A tqdm bar over ``iterable`` (or to ``update`` by hand), drawn only when :func:`shown`;
    it disappears when done."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not shown(), leave=False,
                dynamic_ncols=True, file=sys.stderr)
