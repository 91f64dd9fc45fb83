"""The bookkeeping of a study folder, shared by the encoder study and the VAE study: which
seeds to run, what the study is (``study.json``, fixed on the first run so that a resumed
study is the same study), whether each stage's run folder must be started, resumed or is
already complete, and the wall time per seed summed over the sessions that ran it. Its
files are read through ``nacvae.files.read_json``: a damaged one (cut short, junk) stops the
study in one sentence naming it and saying how to go on.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

from nacvae.errors import ConfigError
from nacvae.files import read_json, write_json
from nacvae.runs import CHECKPOINT, CONFIG, read_config


def seeds_to_run(seeds: int, only_seeds: list[int] | None) -> list[int]:
    """Seeds 0..``seeds``-1, or the ``only_seeds`` given, sorted and without repeats."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}.")
    todo = list(range(seeds)) if only_seeds is None else sorted(set(only_seeds))
    if not todo or any(s < 0 for s in todo):
        raise ConfigError(f"Seeds must be non-negative integers, got {only_seeds}.")
    return todo


def stage_state(run: Path, log: Callable[[str], None], label: str) -> bool | None:
    """Whether ``run`` must be resumed (True) or started (False); None if it is complete.
    A folder left without a checkpoint is removed and started again."""
    if not (run / CONFIG).is_file():
        if run.exists():
            shutil.rmtree(run)
        return False
    status = read_config(run).get("status")
    if status == "complete":
        return None
    if (run / CHECKPOINT).is_file():
        log(f"{label}: continuing the interrupted run in {run}")
        return True
    shutil.rmtree(run)
    return False


def fix_plan(out: Path, header: dict[str, Any]) -> None:
    """Write what the study is (``study.json``) once; a resumed study must be the same study."""
    plan = json.loads(json.dumps(header))  # JSON-normalised, so that it compares equal to what is read back
    path = out / "study.json"
    if path.is_file():
        saved = read_json(path, fix="delete it to have --resume write it again from the preset and options given "
                                    "(they must be the ones the study was started with)",
                          check=lambda v: None if isinstance(v, dict) else "it does not describe a study")
        if saved != plan:
            raise ConfigError(f"{out} holds a study with other settings; continue it with the same preset and "
                              f"options, or choose another --out.")
    else:
        write_json(path, plan)


def read_rows(rows_file: Path, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """A seed folder's ``rows.json``: a list of rows (objects), each with ``keys``."""
    def problem(rows: Any) -> str | None:
        if not isinstance(rows, list) or not all(isinstance(r, dict) and all(k in r for k in keys) for r in rows):
            return "it does not hold the seed's rows"
        return None

    return read_json(rows_file, check=problem,
                     fix=f"delete it to have --resume measure seed {_seed_of(rows_file)} again (its finished runs "
                         "are reused)")


def read_seconds(timing: Path) -> float:
    """A seed folder's ``seconds.json``: its wall time so far."""
    def problem(value: Any) -> str | None:
        seconds = value.get("seconds") if isinstance(value, dict) else None
        ok = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
        return None if ok else "it does not hold the seed's wall time"

    value = read_json(timing, check=problem,
                      fix="delete it to go on (only the wall time of the seed's earlier sessions is lost)")
    return float(value["seconds"])


def _seed_of(path: Path) -> str:
    return path.parent.name.split("-", 1)[-1]


def add_seconds(seed_dir: Path, seconds: float) -> None:
    """Add ``seconds`` to the seed's wall time, summed over the sessions that ran it."""
    timing = seed_dir / "seconds.json"
    before = read_seconds(timing) if timing.is_file() else 0.0
    write_json(timing, {"seconds": before + seconds})


def study_seconds(out: Path) -> dict[str, Any]:
    """The study's wall time in all and per seed, from its seed folders."""
    seconds = {int(_seed_of(t)): read_seconds(t) for t in out.glob("seed-*/seconds.json")}
    return {"seconds": sum(seconds.values()), "seconds_per_seed": {str(k): v for k, v in sorted(seconds.items())}}
