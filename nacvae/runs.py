"""Run folders: a run is a folder holding its configuration, checkpoints, TensorBoard
events and a metrics file; every command that reads a run finds what it needs there.

  config.json            resolved configuration, kind, status
  checkpoints/last.pt    newest checkpoint (see nacvae.checkpoint)
  metrics.jsonl          one JSON record per line ({"event": "train", ...}, {"event": "eval_linear", ...})
  tb/                    TensorBoard events
  .lock                  held (flock) by the one process training in the folder

Writing goes through nacvae.files; reading through the functions here, which check what
they read and say in one sentence what is damaged.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from nacvae.errors import CheckpointError, ConfigError, StorageError
from nacvae.files import (
    DISK_FULL, LOCK_NAME, FolderLock, append_line, check_name_lengths, is_storage_failure, make_dirs, remove_dirs,
    read_json, remove_tree, rewrite_in_place, write_json, write_text,
)

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = Path("checkpoints") / "last.pt"
KINDS = {"pretrain": "pretraining", "vae": "VAE"}


def default_runs_root() -> Path:
    return Path(os.environ.get("NACVAE_RUNS", "runs"))


def new_run_name(kind: str, dataset: str, tag: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = dataset.replace("/", "_").replace(":", "-")
    return f"{kind}-{safe}-{tag}-{stamp}"


def check_run_dir(out: Path, resume: bool, locked: bool = False) -> None:
    """Check, without creating anything, that ``out`` can hold a run: new or empty unless
    resuming, not in use by another process (``locked``: this one holds it), and inside a
    writable folder. A run folder without a checkpoint can be resumed too: it then starts
    afresh (``starts_afresh``)."""
    out = Path(out)
    check_name_lengths(out)
    if out.is_dir() and not locked:
        FolderLock(out).check_free("run folder")
    if resume:
        if not (out / CONFIG).is_file():
            raise ConfigError(f"Cannot resume: {out} is not a run folder (no {CONFIG}).")
    elif out.exists() and (not out.is_dir() or _used(out)):
        raise ConfigError(f"The output folder {out} is already used; choose another --out or pass --resume.")
    ancestor = out.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"The output folder {out} cannot be created: {ancestor} is not a writable folder.")


def starts_afresh(out: Path) -> bool:
    """Whether ``--resume`` on the run folder ``out`` starts it again from step 0: it has no
    checkpoint (deleted, or never written), so nothing of its training is kept, but its saved
    configuration says what to train."""
    return not (Path(out) / CHECKPOINT).is_file()


def _used(folder: Path) -> bool:
    """Whether ``folder`` holds anything but a lock file."""
    return any(p.name != LOCK_NAME for p in folder.iterdir())


def create_run_dir(out: Path) -> None:
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"The output folder {out} cannot be created ({exc.strerror}).") from exc


def write_config(run: Path, config: dict[str, Any]) -> None:
    write_json(Path(run) / CONFIG, config)


def read_config(run: Path) -> dict[str, Any]:
    """The run's ``config.json``: a JSON object naming the run's kind."""
    path = Path(run) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{run} is not a nacvae run folder (no {CONFIG}).")
    return read_json(path, check=_config_problem)


def _config_problem(config: Any) -> str | None:
    if not isinstance(config, dict):
        return "it does not hold a run configuration"
    if config.get("kind") not in KINDS:
        return "it does not say whether it is a pretraining or a VAE run"
    return None


def read_run_config(run: Path, kind: str, resuming: bool = False) -> dict[str, Any]:
    """``read_config`` of a run that must be of ``kind``, with its settings section
    (``config["pretrain"]`` or ``config["vae"]``) present."""
    config = read_config(run)
    if config["kind"] != kind:
        if resuming:
            raise ConfigError(f"Cannot resume: {run} is a {config['kind']} run, not a {KINDS[kind]} run.")
        raise CheckpointError(f"{run} is a {config['kind']} run, not a {KINDS[kind]} run.")
    if not isinstance(config.get(kind), dict):
        raise CheckpointError(f"{Path(run) / CONFIG} is damaged: it has no {kind} settings.")
    return config


def run_checkpoint(run: Path, kind: str, what: str, label: str | None = None) -> Path:
    """The checkpoint of run folder ``run``, which must be a ``kind`` run (``what`` names
    that kind in messages, ``label`` names the folder; default: its path)."""
    label = label or str(run)
    if not (Path(run) / CONFIG).is_file():
        raise CheckpointError(f"{label} is not a nacvae run folder (no {CONFIG}).")
    have = read_config(run).get("kind")
    if have != kind:
        raise CheckpointError(f"{label} is a {have} run, not a {what} run.")
    if not (Path(run) / CHECKPOINT).is_file():
        raise CheckpointError(f"{label} holds no checkpoint yet.")
    return Path(run) / CHECKPOINT


def append_metrics(run: Path, record: dict[str, Any]) -> None:
    append_line(Path(run) / METRICS, json.dumps(record, sort_keys=True))


def read_metrics(run: Path) -> list[dict[str, Any]]:
    """The run's metric records. A line that is not a JSON object (what a process killed
    while appending, or a full disk, leaves) is skipped; ``truncate_metrics`` removes it."""
    path = Path(run) / METRICS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def truncate_metrics(run: Path, event: str, after_step: int) -> None:
    """Drop ``event`` records past ``after_step`` (they are replayed when a run resumes),
    and any damaged line."""
    def past(r: dict[str, Any]) -> bool:
        step = r.get("step", 0)
        return r.get("event") == event and isinstance(step, (int, float)) and step > after_step

    keep = [r for r in read_metrics(run) if not past(r)]
    write_text(Path(run) / METRICS, "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))


def iter_runs(root: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    root = Path(root)
    if not root.is_dir():
        return
    for cfg in root.glob(f"*/{CONFIG}"):
        try:
            config = json.loads(cfg.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(config, dict):
            yield cfg.parent, config


def find_latest_run(root: Path, kind: str, **match: Any) -> Path | None:
    """Newest complete run of ``kind`` under ``root`` whose config matches every given value."""
    found = [
        (cfg.get("finished_at", ""), path)
        for path, cfg in iter_runs(root)
        if cfg.get("kind") == kind and cfg.get("status") == "complete"
        and all(cfg.get(k) == v for k, v in match.items())
    ]
    return max(found)[1] if found else None


# ------------------------------------------------------------- one training process


class RunFolder:
    """A run folder held by one training process (see ``hold_run``)."""

    def __init__(self, path: Path, resume: bool, afresh: bool = False) -> None:
        self.path, self.resume, self.afresh = Path(path), resume, afresh
        self.created: list[Path] = []
        self.lock = FolderLock(self.path)

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def open(self) -> "RunFolder":
        check_run_dir(self.path, self.resume)
        self.created = make_dirs(self.path)
        try:
            self.lock.acquire("run folder")
        except StorageError:
            remove_dirs(self.created)
            raise
        try:
            # Checked again under the lock: another process may have used the folder
            # between the first check and taking the lock.
            check_run_dir(self.path, self.resume, locked=True)
            if self.afresh:
                self._clear()
        except BaseException:
            self.lock.release()
            raise
        return self

    def _clear(self) -> None:
        """Make way for a resumed run that starts afresh: what its earlier start left (metrics,
        events, a checkpoint folder without a checkpoint) goes; its configuration stays, so
        that it can be resumed again should this start fail too."""
        if self.checkpoint.is_file():  # another process trained it between the checks and the lock
            raise ConfigError(f"{self.path} has been given a checkpoint meanwhile; continue it with --resume.")
        sys.stderr.write(f"{self.path} holds no checkpoint, so the run starts afresh in place with its saved "
                         "configuration.\n")
        for name in (METRICS, "tb", CHECKPOINT.parent):
            p = self.path / name
            remove_tree(p) if p.is_dir() else p.unlink(missing_ok=True)

    def _remove(self) -> None:
        """Remove what this process made of a run that trained nothing."""
        if self.created:
            remove_tree(self.path)
            remove_dirs(self.created[:-1])
        else:  # the folder was there, empty: leave it empty
            for p in self.path.iterdir():
                remove_tree(p) if p.is_dir() else p.unlink(missing_ok=True)

    def close(self, exc: BaseException | None) -> BaseException | None:
        """Release the folder; after a failure, leave it resumable or remove it, and return
        the error to raise in its place (None: the original one)."""
        try:
            if exc is None:
                return None
            trained = self.checkpoint.is_file()
            if not trained and not self.resume:
                self._remove()
            else:
                self._record_status("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
            if is_storage_failure(exc):
                return self._storage_message(exc, trained)
            return None
        finally:
            self.lock.release()

    def _record_status(self, status: str) -> None:
        """Best effort: the disk may be full, so a full rewrite falls back to one in place."""
        try:
            config = read_config(self.path)
        except CheckpointError:
            return
        if config.get("status") != "running":
            return
        config["status"] = status
        try:
            write_config(self.path, config)
        except (StorageError, OSError):
            rewrite_in_place(self.path / CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")

    def _storage_message(self, exc: BaseException, trained: bool) -> StorageError:
        full = getattr(exc, "errno", None) in DISK_FULL  # else the folder is not writable
        problem = f"The disk holding {self.path} is full" if full else f"{self.path} is not writable"
        if trained:
            step = _checkpoint_step(self.checkpoint)
            at = f" (step {step})" if step is not None else ""
            fix = "free some space" if full else "make the folder writable"
            return StorageError(f"{problem}; the last checkpoint{at} is intact and the run is marked failed, so "
                                f"{fix} and continue it with --resume.")
        if self.resume:  # started afresh: the folder keeps its configuration
            fix = "free some space" if full else "make the folder writable"
            return StorageError(f"{problem}; nothing had been trained yet and the run is marked failed, so {fix} "
                                "and start it again with --resume.")
        return StorageError(f"{problem}; nothing had been trained yet, so the run folder was removed.")


def _checkpoint_step(path: Path) -> int | None:
    try:
        from nacvae.checkpoint import load_checkpoint

        return load_checkpoint(path)["step"]
    except Exception:  # noqa: BLE001 - only for the message
        return None


@contextlib.contextmanager
def hold_run(out: str | Path, resume: bool, enabled: bool = True, afresh: bool = False,
             share: Callable[[Callable[[], Any]], Any] = lambda fn: fn()) -> Iterator[RunFolder | None]:
    """Check, create and lock the run folder ``out`` for the training inside the block.

    Only one process at a time holds a folder (a second one gets a ConfigError naming the
    first's process id). If the block fails before the first checkpoint of a new run, the
    folder is removed, since there is nothing to resume; after that its status becomes
    "interrupted" (Ctrl-C, SIGTERM) or "failed", and a full disk or unwritable folder ends
    in one sentence saying what is kept. ``enabled`` False (ranks other than 0 under
    torchrun) does nothing; ``share`` calls the opening (``distributed.agree``: so that
    every process fails alike when the folder is taken). ``afresh`` (a resumed run that
    ``starts_afresh``): the folder is cleared for step 0 but for its configuration, which is
    kept after a failure as for any resumed run.
    """
    folder = share(lambda: RunFolder(Path(out), resume, afresh).open() if enabled else None)
    if folder is None:
        yield None
        return
    try:
        yield folder
    except BaseException as exc:
        replacement = folder.close(exc)
        if replacement is not None and replacement is not exc:
            raise replacement from exc
        raise
    else:
        folder.close(None)
