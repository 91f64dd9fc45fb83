"""``nacvae compare``: runs side by side, the settings in which they differ and their newest
evaluations, as one table; and their online monitor rows as one figure."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from nacvae.errors import ConfigError
from nacvae.files import atomic_write
from nacvae.runs import read_config, read_metrics

# What each evaluation kind shows, in order: (label, field). Other eval_* kinds show every
# number they recorded, as "kind field".
EVALUATIONS = {
    "eval_linear": (("linear top-1", "test_accuracy"),),
    "eval_knn": (("k-NN top-1", "top1"),),
    "eval_retrieval": (("mAP", "map"),),
    "eval_codes": (("distinct codes", "distinct_codes"),),
    "eval_loglik": (("log p(x) nats", "loglik_nats"),),
    "eval_gap": (("approximation gap", "approximation_gap"), ("amortisation gap", "amortisation_gap")),
}
# Fields of an unknown kind that describe the evaluation rather than measure it.
NOT_MEASURES = {"step", "seed", "seconds", "split_seed", "code_dim", "batch_size", "epochs", "samples", "num_images"}


def run_settings(config: dict[str, Any]) -> dict[str, Any]:
    """A run's settings as one flat mapping: its kind, then its section, a method's options
    by name."""
    kind = config["kind"]
    section = dict(config.get(kind) or {})
    options = section.pop("options", None)
    return {"kind": kind, **section, **(options if isinstance(options, dict) else {})}


def latest_evaluations(records: list[dict[str, Any]]) -> dict[str, Any]:
    """label -> value from the newest record of every ``eval_*`` kind."""
    newest: dict[str, dict[str, Any]] = {}
    for r in records:  # appended in order: the last of a kind is its newest
        event = r.get("event")
        if isinstance(event, str) and event.startswith("eval_"):
            newest[event] = r
    found: dict[str, Any] = {}
    for event, r in newest.items():
        if event in EVALUATIONS:
            for label, key in EVALUATIONS[event]:
                if label not in found and r.get(key) is not None:
                    found[label] = r[key]
        else:
            for key, value in r.items():
                if key not in NOT_MEASURES and isinstance(value, (int, float)) and not isinstance(value, bool):
                    found[f"{event[len('eval_'):]} {key}"] = value
    return found


def compare_table(runs: list[str | Path]) -> dict[str, Any]:
    """``{"runs": [...], "rows": [{"name", "group": setting|evaluation, "values": [...]}]}``:
    the settings whose values differ between the runs, then every evaluation any of them has."""
    settings, evaluations = [], []
    for run in runs:
        settings.append(run_settings(read_config(Path(run))))
        evaluations.append(latest_evaluations(read_metrics(Path(run))))
    rows = []
    for key in _keys(settings):
        values = [s.get(key) for s in settings]
        if any(v != values[0] for v in values):
            rows.append({"name": key, "group": "setting", "values": values})
    for label in _keys(evaluations):
        rows.append({"name": label, "group": "evaluation", "values": [e.get(label) for e in evaluations]})
    return {"runs": [str(r) for r in runs], "rows": rows}


def _keys(dicts: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for d in dicts:
        seen.update(dict.fromkeys(d))
    return list(seen)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def format_table(table: dict[str, Any], markdown: bool = False) -> str:
    header = ["", *table["runs"]]
    body = [[row["name"], *map(_cell, row["values"])] for row in table["rows"]]
    if not body:
        body = [["(the runs have the same settings and no evaluations)", *[""] * len(table["runs"])]]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, body)])


MONITORED = (("knn_top1", "k-NN top-1"), ("map", "mAP"))


def monitor_rows(run: str | Path) -> list[dict[str, Any]]:
    return [r for r in read_metrics(Path(run)) if r.get("event") == "monitor" and isinstance(r.get("step"), int)]


def plot_monitor(runs: list[str | Path], path: str | Path) -> list[str]:
    """Draw the runs' ``"monitor"`` rows (k-NN top-1 and mAP against the step) into figure
    ``path``; returns the runs that had none (left out)."""
    rows = {str(r): monitor_rows(r) for r in runs}
    if not any(rows.values()):
        raise ConfigError("None of the runs has monitor records to plot; pretrain with --monitor-every N to "
                          "record them.")
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in ("png", "pdf", "svg"):
        raise ConfigError(f"--plot {path}: name a .png, .pdf or .svg file.")
    from matplotlib.figure import Figure  # imported only when plotting

    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, (key, label) in zip(fig.subplots(1, len(MONITORED)), MONITORED):
        for run, records in rows.items():
            points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
            if points:
                ax.plot(*zip(*points), marker=".", label=run)
        ax.set(xlabel="step", ylabel=label, title=label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return [run for run, records in rows.items() if not records]
