"""The whole chain of the paper at a chosen scale: pretrain, evaluate, transfer into VAEs.

For each seed: pretrain NAC, SimCLR and MoCo-v2 encoders; evaluate each, and a random
encoder of the same architecture, with the linear probe, Hamming retrieval and code
statistics; train a VAE from each initialisation and estimate its log-likelihood and KL.
The results are written as JSON and markdown tables, with figures, into the study folder.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nacvae.errors import ConfigError
from nacvae.runs import check_run_dir, create_run_dir, read_metrics

OBJECTIVES = ("nac", "simclr", "moco")
INITS = ("random",) + OBJECTIVES


@dataclass
class Preset:
    """A study's scale. ``pretrain`` / ``vae`` are passed to the training configurations."""

    data: str
    arch: str
    description: str
    pretrain: dict[str, Any] = field(default_factory=dict)
    linear: dict[str, Any] = field(default_factory=dict)
    vae: dict[str, Any] = field(default_factory=dict)
    loglik_samples: int = 1000
    loglik_images: int | None = None


PRESETS: dict[str, Preset] = {
    # About 5-8 minutes on 2 CPU cores: the README's first command.
    "digits": Preset(
        data="digits", arch="smallconv",
        description="scikit-learn digits (1,438 train / 359 test, 8x8), small conv net, short runs",
        pretrain=dict(epochs=30, batch_size=128),
        linear=dict(protocol="fast", epochs=100, batch_size=256),
        vae=dict(epochs=30, batch_size=128, latent_dim=16),
        loglik_samples=500,
    ),
    # The CPU-scale study on real data: encoders pretrained on the retrieval protocol's
    # 5,000-image subset (500 per class, as the paper's hashing runs) and evaluated on the
    # full splits; VAEs on all 60,000 training images. About 30 minutes a seed on 2 CPU cores.
    "fashion-mnist-cpu": Preset(
        data="fashion-mnist", arch="smallconv",
        description="Fashion-MNIST (28x28), small conv net pretrained 10 epochs on 5,000 images, VAEs 2 epochs on 60,000",
        pretrain=dict(subset="retrieval", epochs=10, batch_size=256, optimizer="lars", lr=3.0, warmup_epochs=1),
        linear=dict(protocol="fast", epochs=30, batch_size=1000),
        vae=dict(epochs=2, batch_size=256, latent_dim=32),
        loglik_samples=100, loglik_images=500,
    ),
    # The paper's CIFAR-10 classification protocol (GPU; see experiments/).
    "cifar10-paper": Preset(
        data="cifar10", arch="resnet50",
        description="CIFAR-10, ResNet-50, LARS lr 3.0, batch 1000, 1000 epochs, p = 0.1 (the paper's)",
        pretrain=dict(epochs=1000, batch_size=1000, optimizer="lars", lr=3.0, warmup_epochs=10, flip_prob=0.1),
        linear=dict(protocol="paper", epochs=100, batch_size=1000),
        vae=dict(epochs=200, batch_size=256, latent_dim=64),
        loglik_samples=5000,
    ),
}


def _summary(values: list[float]) -> dict[str, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values)}


# The columns of the results table: (key in a row, header, format, higher is better)
COLUMNS = [
    ("linear_test_accuracy", "linear top-1 (%)", lambda v: f"{100 * v:.1f}", True),
    ("retrieval_map", "mAP@all (%)", lambda v: f"{100 * v:.1f}", True),
    ("distinct_codes", "distinct codes", lambda v: f"{v:.0f}", True),
    ("mean_pairwise_hamming", "mean Hamming", lambda v: f"{v:.1f}", True),
    ("vae_loglik_nats", "VAE log p(x) (nats)", lambda v: f"{v:.1f}", True),
    ("vae_bits_per_dim", "bits/dim", lambda v: f"{v:.3f}", False),
    ("vae_kl", "KL (nats)", lambda v: f"{v:.2f}", True),
    ("vae_active_units", "active units", lambda v: f"{v:.1f}", True),
]


def run_study(preset: str | Preset, out: str | Path, seeds: int = 1, data_dir: str | None = None,
              device: str = "auto", progress: bool = True, log: Callable[[str], None] = print,
              flip_prob: float | None = None) -> dict[str, Any]:
    """Run the chain for ``seeds`` seeds into ``out``; returns the aggregated results."""
    from nacvae.eval.downstream import evaluate_codes, evaluate_linear, evaluate_retrieval, resolve_encoder
    from nacvae.train.config import resolve_config, resolve_device
    from nacvae.train.pretrain import pretrain
    from nacvae.train.vae import evaluate_run, resolve_vae_config, train_vae

    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ConfigError(f"Unknown preset '{preset}'; choose one of {', '.join(PRESETS)}.")
        name, preset = preset, PRESETS[preset]
    else:
        name = "custom"
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}.")
    out = Path(out)
    check_run_dir(out, resume=False)
    torch_device = resolve_device(device)
    create_run_dir(out)
    started = time.time()
    rows: list[dict[str, Any]] = []
    pretrain_overrides = dict(preset.pretrain, arch=preset.arch, data_dir=data_dir, device=device)
    if flip_prob is not None:
        pretrain_overrides["flip_prob"] = flip_prob

    for seed in range(seeds):
        seed_dir = out / f"seed-{seed}"
        runs = {}
        for objective in OBJECTIVES:
            log(f"[seed {seed}] pretraining {objective}")
            cfg = resolve_config(preset.data, objective=objective, seed=seed, **pretrain_overrides)
            runs[objective] = pretrain(cfg, seed_dir / f"pretrain-{objective}", progress=progress)
        for init in INITS:
            log(f"[seed {seed}] evaluating the {init} encoder")
            if init == "random":
                encoder, meta, data, ddir = resolve_encoder(init="random", arch=preset.arch, data=preset.data,
                                                            data_dir=data_dir, seed=seed)
            else:
                encoder, meta, data, ddir = resolve_encoder(run=runs[init])
            linear = evaluate_linear(encoder, data, ddir, seed=seed, device=torch_device, **preset.linear)
            retrieval = evaluate_retrieval(encoder, data, ddir, seed=seed, device=torch_device)
            codes = evaluate_codes(encoder, data, ddir, device=torch_device)
            log(f"[seed {seed}] training a VAE from the {init} encoder")
            vae_cfg = resolve_vae_config(preset.data, init=init, arch=preset.arch, seed=seed, data_dir=data_dir,
                                         device=device, encoder=None if init == "random" else str(runs[init]),
                                         **preset.vae)
            vae_run = train_vae(vae_cfg, seed_dir / f"vae-{init}", progress=progress)
            loglik = evaluate_run(vae_run, samples=preset.loglik_samples, num_images=preset.loglik_images,
                                  seed=seed, device=device)
            rows.append({
                "seed": seed, "init": init,
                "linear_test_accuracy": linear["test_accuracy"], "linear_train_accuracy": linear["train_accuracy"],
                "retrieval_map": retrieval["map"], "distinct_codes": codes["distinct_codes"],
                "mean_pairwise_hamming": codes["mean_pairwise_hamming"],
                "vae_loglik_nats": loglik["loglik_nats"], "vae_bits_per_dim": loglik["bits_per_dim"],
                "vae_elbo": loglik["elbo"], "vae_kl": loglik["kl"], "vae_active_units": loglik["active_units"],
                "vae_run": str(vae_run), "pretrain_run": None if init == "random" else str(runs[init]),
            })
            _write_json(out / "rows.json", rows)

    results = aggregate(rows)
    results.update(preset=name, description=preset.description, data=preset.data, arch=preset.arch,
                   seeds=seeds, seconds=time.time() - started, linear_protocol=preset.linear.get("protocol", "fast"),
                   loglik_samples=preset.loglik_samples, retrieval_empty_queries="excluded",
                   retrieval_ties="gallery-index")
    _write_json(out / "results.json", results)
    (out / "results.md").write_text(markdown_table(results))
    write_figures(results, rows, out)
    return results


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    table = {}
    for init in INITS:
        mine = [r for r in rows if r["init"] == init]
        if mine:
            table[init] = {key: _summary([r[key] for r in mine]) for key, *_ in COLUMNS}
    return {"table": table, "rows": rows}


def markdown_table(results: dict[str, Any]) -> str:
    table = results["table"]
    n = max(v["linear_test_accuracy"]["n"] for v in table.values())
    lines = [f"| encoder | {' | '.join(h for _, h, _, _ in COLUMNS)} |", "|---" * (len(COLUMNS) + 1) + "|"]
    for init in [i for i in INITS if i in table]:
        cols = table[init]
        cells = []
        for key, _, fmt, _ in COLUMNS:
            s = cols[key]
            cells.append(fmt(s["mean"]) + (f" ± {fmt(s['std'])}" if n > 1 else ""))
        lines.append(f"| {init} | {' | '.join(cells)} |")
    caption = (f"\n{results.get('description', '')}; mean ± standard deviation over {n} seed(s). "
               f"Linear probe: {results.get('linear_protocol', 'fast')} protocol. Retrieval: Hamming ranking, ties by "
               f"gallery index, queries without a relevant item excluded. VAE: importance-weighted log p(x) with "
               f"K = {results.get('loglik_samples')} samples on the test split.\n")
    return "\n".join(lines) + "\n" + caption


def write_figures(results: dict[str, Any], rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    table = results["table"]
    inits = [i for i in INITS if i in table]  # a fixed order, whatever order JSON gave
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    colours = ["#777777", "#d62728", "#1f77b4", "#2ca02c"]
    for ax, (key, header, _, _) in zip(axes.flat, COLUMNS):
        # Points with error bars, not bars: several measures are negative or far from 0.
        for i, init in enumerate(inits):
            s = table[init][key]
            ax.errorbar([i], [s["mean"]], yerr=[s["std"]], fmt="o", ms=8, capsize=5, color=colours[i % 4])
        ax.set_xticks(range(len(inits)), inits)
        ax.set_xlim(-0.5, len(inits) - 0.5)
        ax.set_title(header)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(results.get("description", ""))
    fig.tight_layout()
    fig.savefig(fig_dir / "summary.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        if row["seed"] != 0:
            continue
        curve = [(r["epoch"], r["elbo"]) for r in read_metrics(Path(row["vae_run"])) if r.get("event") == "test"]
        if curve:
            ax.plot(*zip(*curve), label=row["init"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("test ELBO per image (nats)")
    ax.set_title("VAE training from each encoder initialisation (seed 0)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(fig_dir / "vae_training.png", dpi=100)
    plt.close(fig)


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
