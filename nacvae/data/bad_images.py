"""Unreadable images of a streamed dataset: by default the first one stops the run with one
sentence naming it; with ``--skip-bad-images`` each is replaced (nacvae.data.stream) and a
``BadImages`` record counts them and names the first few.

DataLoader workers hand an unreadable image back as a value (``Unreadable``) rather than
raising it, so the main process can raise it as its own sentence (``settle``), not as
DataLoader's wrapped traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from nacvae.errors import DataError, NacvaeError

__all__ = ["BAD_IMAGES_NAMED", "SKIP_HINT", "BadImages", "Unreadable", "settle", "worker_errors"]

# Bad images named in a run's record; the count covers them all.
BAD_IMAGES_NAMED = 10
SKIP_HINT = "remove or replace that file, or pass --skip-bad-images to skip such images"


class BadImages:
    """The images skipped (``--skip-bad-images``): how many distinct files, the first few by
    name, and the messages of those not yet shown (``take_news``)."""

    def __init__(self) -> None:
        self.count = 0
        self.first: list[str] = []
        self._seen: set[str] = set()
        self._news: list[str] = []

    def add(self, name: str, message: str) -> None:
        if name in self._seen:
            return
        self._seen.add(name)
        self.count += 1
        if len(self.first) < BAD_IMAGES_NAMED:
            self.first.append(name)
            self._news.append(message)

    def restore(self, saved) -> None:
        """Continue a record saved by an earlier part of the run (``to_dict``); a file beyond
        the named ones that is met again is counted again."""
        if not isinstance(saved, dict):
            return
        first = [str(n) for n in saved.get("first") or [] if isinstance(n, str)]
        unnamed = max(0, int(saved.get("count") or 0) - len(first)) if isinstance(saved.get("count"), int) else 0
        for name in first:
            self.add(name, "")
        self.count += unnamed
        self._news = [m for m in self._news if m]

    def take_news(self) -> list[str]:
        news, self._news = self._news, []
        return news

    def to_dict(self) -> dict:
        return {"count": self.count, "first": list(self.first)}


@dataclass(frozen=True)
class Unreadable:
    """What a worker hands back for an image it cannot read: its name and the sentence."""

    name: str
    message: str


def settle(bad: Sequence[Unreadable], record: BadImages | None) -> None:
    """Raise the first unreadable image of a batch as its own DataError, or with ``record``
    (skipping) note them all."""
    for item in bad:
        if record is None:
            raise DataError(item.message)
        record.add(item.name, item.message)


def worker_errors(batches):
    """``batches`` with an error a DataLoader worker raised re-raised as itself: DataLoader
    wraps it as 'Caught DataError in DataLoader worker process 0. Original Traceback ...';
    the user gets the original sentence."""
    try:
        yield from batches
    except NacvaeError as exc:
        text = str(exc)
        if not text.startswith("Caught ") or "Original Traceback" not in text:
            raise
        last = text.strip().splitlines()[-1]
        raise type(exc)(last.split(": ", 1)[1] if ": " in last else last) from None
