"""The VAE study: does a pretrained encoder make a VAE converge faster and infer better?

For each seed: pretrain NAC, SimCLR and MoCo-v2 encoders for the same number of steps
(as ``nacvae.study`` does), then train a VAE from each of them and from a random encoder,
twice: with the backbone fine-tuned, and frozen (only the Gaussian heads and the decoder
train, so the inference quality comes from the pretrained features alone). Every VAE logs
its convergence curve (test ELBO and a cheap log p(x) at fixed fractions of training, on
fixed test images) and is measured at the end: importance-weighted log p(x), KL, active
units, and the inference gap split into its approximation and amortisation parts
(``nacvae.eval.gap``). Per (seed, mode) the study also reports how many steps each init
needed to reach the random init's final curve ELBO.

Rows are written to ``seed-N/rows.json`` as each VAE is measured, so a study resumes seed
by seed and VAE by VAE (``resume=True``), like ``nacvae.study``.
"""

from __future__ import annotations

import json
import statistics
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nacvae.errors import ConfigError
from nacvae.runs import CONFIG, check_run_dir, create_run_dir, read_metrics
from nacvae.files import write_text
from nacvae.study import (
    INITS, OBJECTIVES, PRESETS, _stage, _write_json, add_seconds, fix_plan, lookup_preset, seeds_to_run, study_seconds,
)

__all__ = ["VAEStudyPreset", "VAE_PRESETS", "VAE_OPTIONS", "MODES", "run_vae_study", "steps_to_reach", "aggregate_vae",
           "vae_markdown_table", "summary_text", "pretraining_differences", "borrowed_encoder"]

MODES = ("fine-tuned", "frozen")


@dataclass
class VAEStudyPreset:
    """A VAE study's scale; ``pretrain`` / ``vae`` go to the training configurations,
    ``gap`` holds ``GapBudget`` fields and ``num_images``."""

    data: str
    arch: str
    description: str
    pretrain: dict[str, Any] = field(default_factory=dict)
    vae: dict[str, Any] = field(default_factory=dict)
    loglik_samples: int = 1000
    loglik_images: int | None = None
    gap: dict[str, Any] = field(default_factory=dict)


VAE_PRESETS: dict[str, VAEStudyPreset] = {
    # The encoders are those of the fashion-mnist-cpu preset (1,400 steps on the retrieval
    # subset, where NAC's code magnitude has flattened), so that the VAEs start from
    # converged encoders; --encoders-from reuses that study's runs instead of training
    # them again. VAEs train 150 steps of 128 images (a third of an epoch: the early
    # phase, where a starting point can matter) and are measured on fixed test images.
    "fashion-mnist-vae": VAEStudyPreset(
        data="fashion-mnist", arch="smallconv",
        description="Fashion-MNIST (28x28), small conv net pretrained 1,400 steps on 5,000 images; "
                    "VAEs 150 steps of 128 images, backbone fine-tuned or frozen",
        pretrain=dict(PRESETS["fashion-mnist-cpu"].pretrain),
        vae=dict(steps=150, batch_size=128, latent_dim=32, log_every=10, curve_points=10, curve_samples=5,
                 curve_images=300, test_every=0, image_every=1),
        loglik_samples=100, loglik_images=300,
        gap=dict(num_images=100, samples=100, elbo_samples=50, fit_samples=2, lr=0.05, max_steps=300,
                 check_every=25, patience=4, tol=0.05),
    ),
}

# Options of the VAE study that change its VAEs (``vae_options`` of ``run_vae_study``).
VAE_OPTIONS = ("likelihood", "latent_dim", "steps")
# Pretraining settings that say how a run was executed, not what it trained.
NOT_COMPARED = ("device", "data_dir", "download", "checkpoint_every", "log_every", "threads")


def pretraining_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The pretraining settings (config keys) in which a finished run differs from the
    ones a study would have used."""
    return sorted(k for k in set(saved) | set(wanted) if k not in NOT_COMPARED and saved.get(k) != wanted.get(k))


def borrowed_encoder(study: Path, seed: int, objective: str, wanted: dict[str, Any]) -> Path:
    """``study``'s finished ``pretrain-<objective>`` run of ``seed``, checked to have been
    trained with the settings ``wanted`` (a ``PretrainConfig.to_dict()``)."""
    from nacvae.runs import read_config
    from nacvae.train.config import saved_config

    run = study / f"seed-{seed}" / f"pretrain-{objective}"
    config = read_config(run) if (run / CONFIG).is_file() else {}
    if config.get("status") != "complete":
        raise ConfigError(f"--encoders-from {study} has no finished {objective} encoder for seed {seed} "
                          f"(expected {run}).")
    saved = saved_config(run, config["pretrain"]).to_dict()
    differ = pretraining_differences(saved, wanted)
    if differ:
        key = differ[0]
        raise ConfigError(f"The {objective} encoder in {run} was pretrained with {key} = {saved.get(key)!r}, "
                          f"not the study's {wanted.get(key)!r}, so it cannot stand in for it.")
    return run


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


def steps_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    """The first step of ``curve`` ([(step, ELBO)], in step order) whose ELBO is at least
    ``target``; None if it never gets there."""
    for step, value in curve:
        if value >= target:
            return int(step)
    return None


def _curve(run: Path) -> list[list[float]]:
    return [[r["step"], r["elbo"], r.get("loglik_nats")] for r in read_metrics(run) if r.get("event") == "curve"]


def run_vae_study(preset: str | VAEStudyPreset, out: str | Path, seeds: int = 1, data_dir: str | None = None,
                  device: str = "auto", progress: bool = True, log: Callable[[str], None] = print,
                  flip_prob: float | None = None, resume: bool = False,
                  only_seeds: list[int] | None = None, encoders_from: str | Path | None = None,
                  vae_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run seeds 0..``seeds``-1 (or ``only_seeds``) into ``out``; returns the results over
    every seed the folder holds (results.json, results.md and figures/ are rebuilt after
    each seed).

    ``encoders_from``: a study folder (``nacvae.study`` or another VAE study) whose
    ``seed-N/pretrain-<objective>`` runs are used instead of pretraining, after checking
    they were trained with this preset's settings. ``vae_options`` overrides the preset's
    VAE settings named in ``VAE_OPTIONS`` (a variant of the study, in its own folder).
    """
    from nacvae.train.vae_config import resolve_vae_config

    name, preset = lookup_preset(preset, VAE_PRESETS, "VAE study preset")
    todo = seeds_to_run(seeds, only_seeds)
    out = Path(out)
    vae_options = {k: v for k, v in (vae_options or {}).items() if v is not None}
    unknown = sorted(set(vae_options) - set(VAE_OPTIONS))
    if unknown:
        raise ConfigError(f"The VAE study cannot change '{unknown[0]}'; it varies {', '.join(VAE_OPTIONS)}.")
    vae_settings = {**preset.vae, **vae_options}
    # Option values are checked before anything is written.
    resolve_vae_config(preset.data, init="random", arch=preset.arch, **vae_settings)
    if encoders_from is not None and not (Path(encoders_from) / "study.json").is_file():
        raise ConfigError(f"--encoders-from {encoders_from} is not a study folder (it has no study.json).")
    if not (resume and out.is_dir()):
        check_run_dir(out, resume=False)
    create_run_dir(out)
    pretrain_overrides = dict(preset.pretrain, arch=preset.arch, data_dir=data_dir, device=device)
    if flip_prob is not None:
        pretrain_overrides["flip_prob"] = flip_prob
    header = dict(preset=name, kind="vae-study", description=preset.description, data=preset.data,
                  arch=preset.arch, pretrain=dict(pretrain_overrides, data_dir=None), vae=vae_settings,
                  loglik_samples=preset.loglik_samples, loglik_images=preset.loglik_images, gap=preset.gap)
    if encoders_from is not None:
        header["encoders_from"] = str(encoders_from)
    fix_plan(out, header)
    results = None
    for seed in todo:
        seed_dir = out / f"seed-{seed}"
        rows_file = seed_dir / "rows.json"
        rows = json.loads(rows_file.read_text()) if rows_file.is_file() else []
        done = {(r["init"], r["mode"]) for r in rows}
        if all((i, m) in done for i in INITS for m in MODES):
            continue
        seed_dir.mkdir(exist_ok=True)
        started = time.time()
        for row in _run_seed(preset, vae_settings, seed, seed_dir, pretrain_overrides, done, data_dir, device,
                             progress, log, None if encoders_from is None else Path(encoders_from)):
            rows.append(row)
            _write_json(rows_file, rows)
        add_seconds(seed_dir, time.time() - started)
        results = _write_results(out, header)
    return results if results is not None else _write_results(out, header)


def _run_seed(preset: VAEStudyPreset, vae_settings: dict[str, Any], seed: int, seed_dir: Path,
              pretrain_overrides: dict[str, Any], done: set[tuple[str, str]], data_dir: str | None, device: str,
              progress: bool, log: Callable[[str], None], encoders_from: Path | None):
    """Pretrain what is missing (or take it from ``encoders_from``), then train and measure
    each (init, mode) VAE; yields rows."""
    from nacvae.eval.gap import GapBudget, evaluate_gap_run
    from nacvae.eval.vae_runs import evaluate_run
    from nacvae.train.config import resolve_config
    from nacvae.train.pretrain import pretrain
    from nacvae.train.vae import resolve_vae_config, train_vae

    runs: dict[str, Path] = {}
    for objective in OBJECTIVES:
        if encoders_from is not None:
            wanted = resolve_config(preset.data, objective=objective, seed=seed, **pretrain_overrides).to_dict()
            runs[objective] = borrowed_encoder(encoders_from, seed, objective, wanted)
            continue
        run = seed_dir / f"pretrain-{objective}"
        runs[objective] = run
        if all((objective, m) in done for m in MODES):
            continue
        state = _stage(run, log, f"[seed {seed}] {objective}")
        if state is None:
            continue
        log(f"[seed {seed}] pretraining {objective}")
        pretrain(resolve_config(preset.data, objective=objective, seed=seed, **pretrain_overrides), run,
                 resume=state, progress=progress)
    gap_options = dict(preset.gap)
    gap_images = gap_options.pop("num_images", None)
    budget = GapBudget(**gap_options)
    for mode in MODES:
        for init in INITS:
            if (init, mode) in done:
                continue
            vae_run = seed_dir / f"vae-{init}-{mode}"
            started = time.time()
            state = _stage(vae_run, log, f"[seed {seed}] VAE from {init}, {mode}")
            if state is not None:
                log(f"[seed {seed}] training a VAE from the {init} encoder, {mode}")
                cfg = resolve_vae_config(preset.data, init=init, arch=preset.arch, seed=seed, data_dir=data_dir,
                                         device=device, encoder=None if init == "random" else str(runs[init]),
                                         freeze_encoder=mode == "frozen", **vae_settings)
                train_vae(cfg, vae_run, resume=state, progress=progress)
            log(f"[seed {seed}] measuring the VAE from {init}, {mode}")
            loglik = evaluate_run(vae_run, samples=preset.loglik_samples, num_images=preset.loglik_images,
                                  seed=seed, device=device)
            gap = evaluate_gap_run(vae_run, budget, num_images=gap_images, seed=seed, device=device)
            yield {
                "seed": seed, "init": init, "mode": mode,
                "loglik_nats": loglik["loglik_nats"], "bits_per_dim": loglik["bits_per_dim"], "elbo": loglik["elbo"],
                "kl": loglik["kl"], "active_units": loglik["active_units"],
                "gap_loglik_nats": gap["loglik_nats"], "elbo_amortised": gap["elbo_amortised"],
                "elbo_optimal": gap["elbo_optimal"], "approximation_gap": gap["approximation_gap"],
                "amortisation_gap": gap["amortisation_gap"], "gap_fit_steps_max": gap["fit_steps_max"],
                "curve": _curve(vae_run),
                # Paths relative to the study folder, so that a study can be moved or published.
                "vae_run": f"{seed_dir.name}/{vae_run.name}",
                "pretrain_run": None if init == "random" else _relative(runs[init], seed_dir.parent),
                "seconds": time.time() - started,
            }


def _relative(run: Path, study: Path) -> str:
    """``run`` relative to the study folder (so that a study can be moved or published);
    a borrowed encoder's path as it was given."""
    try:
        return str(run.relative_to(study))
    except ValueError:
        return str(run)


def study_rows(out: Path) -> list[dict[str, Any]]:
    rows = []
    for path in Path(out).glob("seed-*/rows.json"):
        rows.extend(json.loads(path.read_text()))
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


def _summary(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


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
                    cell[key] = _summary(values)
            table.setdefault(mode, {})[init] = cell
    return {"table": table, "rows": rows}


def summary_text(summary: dict[str, float] | None, fmt: Callable[[float], str]) -> str:
    """"mean ± sd" of a ``_summary`` (the mean alone for one seed, "–" for none)."""
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


COLOURS = {"random": "#777777", "nac": "#d62728", "simclr": "#1f77b4", "moco": "#2ca02c"}


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


def _write_results(out: Path, header: dict[str, Any]) -> dict[str, Any]:
    rows = study_rows(out)
    results = aggregate_vae(rows)
    results.update(header, seeds=len({r["seed"] for r in rows}), **study_seconds(out))
    _write_json(out / "results.json", results)
    write_text(out / "results.md", vae_markdown_table(results))
    write_vae_figure(results["rows"], out / "figures" / "vae_convergence.png", header.get("description", ""))
    return results
