"""The encoder study's report: its ``COLUMNS``, the rows of every seed folder, their mean and
sd per encoder (``aggregate``), the results table (``markdown_table``, with ``encoder_label``
naming each encoder as the paper does) and the figures, all written into the study folder by
``write_results`` after every seed. matplotlib is imported only when figures are drawn.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from nacvae import registry
from nacvae.files import write_json, write_text
from nacvae.runs import read_metrics
from nacvae.studies.folders import read_rows, study_seconds
from nacvae.studies.presets import ALL_INITS, RETRIEVAL_NAC, RETRIEVAL_OF, method_budget, objective_of

# The columns of the results table: (key in a row, header, format, higher is better)
COLUMNS = [
    ("linear_test_accuracy", "linear top-1 (%)", lambda v: f"{100 * v:.1f}", True),
    ("retrieval_map", "mAP@all (%)", lambda v: f"{100 * v:.1f}", True),
    ("retrieval_map_paper_ranking", "mAP@all, paper's ranking (%)", lambda v: f"{100 * v:.1f}", True),
    ("distinct_codes", "distinct codes", lambda v: f"{v:.0f}", True),
    ("mean_pairwise_hamming", "mean Hamming", lambda v: f"{v:.1f}", True),
    ("vae_loglik_nats", "VAE log p(x) (nats)", lambda v: f"{v:.1f}", True),
    ("vae_bits_per_dim", "bits/dim", lambda v: f"{v:.3f}", False),
    ("vae_kl", "KL (nats)", lambda v: f"{v:.2f}", True),
    ("vae_active_units", "active units", lambda v: f"{v:.1f}", True),
]


# What every row of the encoder study has, and its tables use.
ROW_KEYS = ("seed", "init")


def summary(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value) and count over seeds."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values)}


def study_rows(out: Path) -> list[dict[str, Any]]:
    """Every row of every seed folder of a study, in (seed, encoder) order."""
    rows = []
    for path in Path(out).glob("seed-*/rows.json"):
        rows.extend(read_rows(path, ROW_KEYS))
    order = {init: i for i, init in enumerate(ALL_INITS)}
    return sorted(rows, key=lambda r: (r["seed"], order.get(r["init"], len(order))))


def write_results(out: Path, header: dict[str, Any]) -> dict[str, Any]:
    """results.json, results.md and figures/ from every seed folder's rows."""
    rows = study_rows(out)
    results = aggregate(rows)
    results.update(header, seeds=len({r["seed"] for r in rows}), **study_seconds(out))
    write_json(out / "results.json", results)
    write_text(out / "results.md", markdown_table(results))
    write_figures(results, rows, out)
    return results


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, sd and count per (encoder, column) over seeds; columns a row lacks are skipped."""
    table = {}
    for init in ALL_INITS:
        mine = [r for r in rows if r["init"] == init]
        if mine:
            table[init] = {}
            for key, *_ in COLUMNS:
                values = [r[key] for r in mine if r.get(key) is not None]
                if values:
                    table[init][key] = summary(values)
    return {"table": table, "rows": rows}


# One colour per encoder, in ALL_INITS order: random grey, NAC red, SimCLR blue, MoCo green, ...
PALETTE = ("#777777", "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f", "#aec7e8")


def colour(init: str) -> str:
    return PALETTE[ALL_INITS.index(init) % len(PALETTE)]


def encoder_label(init: str, results: dict[str, Any]) -> str:
    pretrain = results.get("pretrain") or {}
    if init == RETRIEVAL_OF:
        return f"nac (p = {pretrain.get('flip_prob', 0.1):g})"
    if init == RETRIEVAL_NAC:
        return f"nac (p = {results.get('retrieval_flip_prob'):g}, for retrieval)"
    return init


def markdown_table(results: dict[str, Any]) -> str:
    table = results["table"]
    n = max(v["linear_test_accuracy"]["n"] for v in table.values())
    lines = [f"| encoder | {' | '.join(h for _, h, _, _ in COLUMNS)} |", "|---" * (len(COLUMNS) + 1) + "|"]
    for init in [i for i in ALL_INITS if i in table]:
        cells = []
        for key, _, fmt, _ in COLUMNS:
            s = table[init].get(key)
            if s is None:
                cells.append("–")
            else:
                cells.append(fmt(s["mean"]) + (f" ± {fmt(s['std'])}" if n > 1 else ""))
        lines.append(f"| {encoder_label(init, results)} | {' | '.join(cells)} |")
    budget = _budget_caption(results, [i for i in ALL_INITS if i in table])
    caption = (f"\n{results.get('description', '')}; mean ± standard deviation over {n} seed(s).{budget} "
               f"Linear probe: {results.get('linear_protocol', 'fast')} protocol. Retrieval: Hamming ranking, ties by "
               f"gallery index, queries without a relevant item excluded (and the paper code's {{0,1}} inner-product "
               f"ranking beside it). VAE: importance-weighted log p(x) with K = {results.get('loglik_samples')} "
               f"samples on the test split.\n")
    return "\n".join(lines) + "\n" + caption


def _budget_caption(results: dict[str, Any], inits: list[str]) -> str:
    """" Every encoder pretrained N steps." and, under the methods' own recipes, the steps of
    those whose batch size differs (the same epochs)."""
    pretrain = results.get("pretrain") or {}
    steps = pretrain.get("steps")
    if not steps:
        return ""
    recipe = results.get("recipe", "shared")
    own = []
    for init in inits:
        objective = objective_of(init)
        if init == "random" or recipe != "own":
            continue
        budget = method_budget(objective, pretrain, recipe)
        if budget.get("steps") != steps:
            own.append(f"{init} {budget['steps']} of {registry.recipe_of(objective)['batch_size']}")
    if not own:
        return f" Every encoder pretrained {steps} steps."
    return (f" Every encoder pretrained for as many images as {steps} steps of {pretrain.get('batch_size')}, "
            f"each method on its own recipe: {', '.join(own)}.")


def write_figures(results: dict[str, Any], rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    table = results["table"]
    inits = [i for i in ALL_INITS if i in table]  # a fixed order, whatever order JSON gave
    fig, axes = plt.subplots(3, 3, figsize=(16, 10))
    colours = {init: colour(init) for init in inits}
    for ax, (key, header, _, _) in zip(axes.flat, COLUMNS):
        scale = 100.0 if "(%)" in header else 1.0
        # Points with error bars, not bars: several measures are negative or far from 0.
        for i, init in enumerate(inits):
            s = table[init].get(key)
            if s is not None:
                ax.errorbar([i], [scale * s["mean"]], yerr=[scale * s["std"]], fmt="o", ms=8, capsize=5,
                            color=colours[init])
        ax.set_xticks(range(len(inits)), [i.replace("-", "\n") for i in inits])
        ax.set_xlim(-0.5, len(inits) - 0.5)
        ax.set_title(header)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(results.get("description", ""))
    fig.tight_layout()
    fig.savefig(fig_dir / "summary.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        if row["seed"] != 0 or not row.get("vae_run"):
            continue
        curve = [(r["epoch"], r["elbo"]) for r in read_metrics(out / row["vae_run"]) if r.get("event") == "test"]
        if curve:
            ax.plot(*zip(*curve), label=row["init"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("test ELBO per image (nats)")
    ax.set_title("VAE training from each encoder initialisation (seed 0)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(fig_dir / "vae_training.png", dpi=100)
    plt.close(fig)
