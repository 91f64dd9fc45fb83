"""Progress bars for the long loops of the evaluations.

Off by default, so that the Python API prints nothing; the command line turns them on for
one command (``progress_bars(True)``) unless given ``--quiet`` or ``--json``. Even then a
bar is drawn only when stderr is a terminal, so logs and pipes stay clean.
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


def shown() -> bool:
    """Whether a bar started now would be drawn."""
    if not _enabled.get():
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def bar(iterable=None, total: int | None = None, desc: str | None = None, unit: str = "it"):
    """A tqdm bar over ``iterable`` (or to ``update`` by hand), drawn only when :func:`shown`;
    it disappears when done."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not shown(), leave=False,
                dynamic_ncols=True, file=sys.stderr)
