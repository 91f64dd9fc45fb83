"""The VAE study's report: its ``COLUMNS``, the rows of every seed folder, how many steps each
init needed to reach the random init's final curve ELBO of the same seed and backbone mode
(``steps_to_reach``), the mean and sd per (mode, init) (``aggregate_vae``), the results table
(``vae_markdown_table``, with ``summary_text`` also used by experiments/vae_variants.py) and
the convergence figure, all written into the study folder by ``write_results``. matplotlib
and numpy are imported only when the figure is drawn.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Callable

from nacvae.files import write_json, write_text
from nacvae.studies.folders import read_rows, study_seconds
from nacvae.studies.presets import INITS, MODES
from nacvae.studies.report import colour, summary

# Columns of the table: (key in a row, header, format)
COLUMNS = [
    ("loglik_nats", "log p(x) (nats)", lambda v: f"{v:.1f}"),
    ("elbo", "ELBO (nats)", lambda v: f"{v:.1f}"),
    ("kl", "KL (nats)", lambda v: f"{v:.1f}"),
    ("active_units", "active units", lambda v: f"{v:.1f}"),
    ("approximation_gap", "approximation gap", lambda v: f"{v:.2f}"),
    ("amortisation_gap", "amortisation gap", lambda v: f"{v:.2f}"),
    ("steps_to_random_final", "steps to random's final ELBO", lambda v: f"{v:.0f}"),
]

COLOURS = {init: colour(init) for init in INITS}
# What every row of the VAE study has, and its tables use.
ROW_KEYS = ("seed", "init", "mode", "curve")


def steps_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    """The first step of ``curve`` ([(step, ELBO)], in step order) whose ELBO is at least
    ``target``; None if it never gets there."""
    for step, value in curve:
        if value >= target:
            return int(step)
    return None


def study_rows(out: Path) -> list[dict[str, Any]]:
    rows = []
    for path in Path(out).glob("seed-*/rows.json"):
        rows.extend(read_rows(path, ROW_KEYS))
    return sorted(rows, key=lambda r: (r["seed"], MODES.index(r["mode"]), INITS.index(r["init"])))


def _with_steps_to_random(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row plus ``random_final_elbo`` and ``steps_to_random_final``: the first curve step at
    which it reached the final curve ELBO of the random init of its seed and mode."""
    final = {(r["seed"], r["mode"]): r["curve"][-1][1] for r in rows if r["init"] == "random" and r["curve"]}
    out = []
    for r in rows:
        target = final.get((r["seed"], r["mode"]))
        curve = [(step, elbo) for step, elbo, _ in r["curve"]]
        out.append({**r, "random_final_elbo": target,
                    "steps_to_random_final": None if target is None else steps_to_reach(curve, target)})
    return out


def aggregate_vae(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, sd and count per (mode, init, column) over seeds; ``reached`` counts the seeds
    whose curve reached the random init's final ELBO."""
    rows = _with_steps_to_random(rows)
    table: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        for init in INITS:
            mine = [r for r in rows if r["init"] == init and r["mode"] == mode]
            if not mine:
                continue
            cell: dict[str, Any] = {"seeds": len(mine),
                                    "reached": sum(r["steps_to_random_final"] is not None for r in mine)}
            for key, *_ in COLUMNS:
                values = [r[key] for r in mine if r.get(key) is not None]
                if values:
                    cell[key] = summary(values)
            table.setdefault(mode, {})[init] = cell
    return {"table": table, "rows": rows}


def summary_text(summary: dict[str, float] | None, fmt: Callable[[float], str]) -> str:
    """"mean ± sd" of a ``summary`` (the mean alone for one seed, "–" for none)."""
    if summary is None:
        return "–"
    return fmt(summary["mean"]) + (f" ± {fmt(summary['std'])}" if summary["n"] > 1 else "")


def vae_markdown_table(results: dict[str, Any]) -> str:
    lines = [f"| backbone | encoder | {' | '.join(h for _, h, _ in COLUMNS)} |", "|---" * (len(COLUMNS) + 2) + "|"]
    seeds = results.get("seeds", 1)
    for mode, cells in results["table"].items():
        for init, cell in cells.items():
            out = []
            for key, _, fmt in COLUMNS:
                text = summary_text(cell.get(key), fmt)
                if key == "steps_to_random_final":
                    text += f" ({cell['reached']}/{cell['seeds']} reached)"
                out.append(text)
            lines.append(f"| {mode} | {init} | {' | '.join(out)} |")
    vae = results.get("vae", {})
    gap = results.get("gap", {})
    variant = (f"{vae.get('likelihood', 'logistic')} likelihood, {vae.get('latent_dim')}-d latent, "
               f"{vae.get('steps')} VAE steps")
    borrowed = (f"; encoders from {results['encoders_from']}" if results.get("encoders_from") else "")
    caption = (f"\n{results.get('description', '')} ({variant}{borrowed}); mean ± sd over {seeds} seed(s). "
               f"log p(x): importance-weighted, "
               f"K = {results.get('loglik_samples')}, the first {results.get('loglik_images')} test images; ELBO, KL "
               f"and active units on the same images. Gaps (nats/image) on the first {gap.get('num_images')} test "
               f"images, q* fitted by Adam (at most {gap.get('max_steps')} steps), log p(x) there with "
               f"K = {gap.get('samples')} samples from q*. Steps to random's final ELBO: the first curve point "
               f"(every {vae.get('steps', 0) // max(vae.get('curve_points', 1), 1)} steps, one-sample ELBO on the "
               f"first {vae.get('curve_images')} test images) at or above the random init's last one, same seed "
               f"and backbone mode.\n")
    return "\n".join(lines) + "\n" + caption


def write_vae_figure(rows: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Convergence per init: mean curve over seeds with a ±1 sd band; ELBO and log p(x)
    (rows) for each backbone mode (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(2, len(MODES), figsize=(12, 8), squeeze=False)
    for col, mode in enumerate(MODES):
        for row_i, (index, label) in enumerate(((1, "test ELBO (nats/image)"), (2, "log p(x), small K (nats/image)"))):
            ax = axes[row_i][col]
            for init in INITS:
                curves = [r["curve"] for r in rows if r["init"] == init and r["mode"] == mode and r["curve"]]
                if not curves:
                    continue
                length = min(len(c) for c in curves)
                steps = np.array([curves[0][i][0] for i in range(length)])
                values = np.array([[c[i][index] if c[i][index] is not None else np.nan for i in range(length)]
                                   for c in curves])
                mean = values.mean(0)
                ax.plot(steps, mean, color=COLOURS[init], label=f"{init} ({len(curves)} seed(s))")
                if len(curves) > 1:
                    sd = values.std(0, ddof=1)
                    ax.fill_between(steps, mean - sd, mean + sd, color=COLOURS[init], alpha=0.2)
            ax.set_title(f"backbone {mode}")
            ax.set_xlabel("VAE training step")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            ax.legend()
    fig.suptitle(textwrap.fill(title, 120), fontsize=10)  # long descriptions wrap instead of being cut
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_results(out: Path, header: dict[str, Any]) -> dict[str, Any]:
    """results.json, results.md and figures/vae_convergence.png from every seed folder's rows."""
    rows = study_rows(out)
    results = aggregate_vae(rows)
    results.update(header, seeds=len({r["seed"] for r in rows}), **study_seconds(out))
    write_json(out / "results.json", results)
    write_text(out / "results.md", vae_markdown_table(results))
    write_vae_figure(results["rows"], out / "figures" / "vae_convergence.png", header.get("description", ""))
    return results
