"""Run folders: a run is a folder holding its configuration, checkpoints, TensorBoard
events and a metrics file; every command that reads a run finds what it needs there.

  config.json            resolved configuration, kind, status
  checkpoints/last.pt    newest checkpoint (see nacvae.checkpoint)
  metrics.jsonl          one JSON record per line ({"event": "train", ...}, {"event": "eval_linear", ...})
  tb/                    TensorBoard events
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

from nacvae.checkpoint import atomic_write
from nacvae.errors import CheckpointError, ConfigError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = Path("checkpoints") / "last.pt"


def default_runs_root() -> Path:
    return Path(os.environ.get("NACVAE_RUNS", "runs"))


def new_run_name(kind: str, dataset: str, tag: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = dataset.replace("/", "_").replace(":", "-")
    return f"{kind}-{safe}-{tag}-{stamp}"


def check_run_dir(out: Path, resume: bool) -> None:
    """Check, without creating anything, that ``out`` can hold a run: new or empty unless
    resuming, and inside a writable folder."""
    out = Path(out)
    if resume:
        if not (out / CONFIG).is_file():
            raise ConfigError(f"Cannot resume: {out} is not a run folder (no {CONFIG}).")
        if not (out / CHECKPOINT).is_file():
            raise ConfigError(f"Cannot resume: {out} holds no checkpoint yet; start it again without --resume.")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"The output folder {out} is already used; choose another --out or pass --resume.")
    ancestor = out.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"The output folder {out} cannot be created: {ancestor} is not a writable folder.")


def create_run_dir(out: Path) -> None:
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"The output folder {out} cannot be created ({exc.strerror}).") from exc


def write_config(run: Path, config: dict[str, Any]) -> None:
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    atomic_write(Path(run) / CONFIG, lambda tmp: Path(tmp).write_text(text))


def read_config(run: Path) -> dict[str, Any]:
    path = Path(run) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{run} is not a nacvae run folder (no {CONFIG}).")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON.") from exc


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
    with open(Path(run) / METRICS, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read_metrics(run: Path) -> list[dict[str, Any]]:
    path = Path(run) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(run: Path, event: str, after_step: int) -> None:
    """Drop ``event`` records past ``after_step`` (they are replayed when a run resumes)."""
    keep = [r for r in read_metrics(run) if not (r.get("event") == event and r.get("step", 0) > after_step)]
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep)
    atomic_write(Path(run) / METRICS, lambda tmp: Path(tmp).write_text(text))


def iter_runs(root: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    root = Path(root)
    if not root.is_dir():
        return
    for cfg in root.glob(f"*/{CONFIG}"):
        try:
            yield cfg.parent, json.loads(cfg.read_text())
        except (OSError, json.JSONDecodeError):
            continue


def find_latest_run(root: Path, kind: str, **match: Any) -> Path | None:
    """Newest complete run of ``kind`` under ``root`` whose config matches every given value."""
    found = [
        (cfg.get("finished_at", ""), path)
        for path, cfg in iter_runs(root)
        if cfg.get("kind") == kind and cfg.get("status") == "complete"
        and all(cfg.get(k) == v for k, v in match.items())
    ]
    return max(found)[1] if found else None
