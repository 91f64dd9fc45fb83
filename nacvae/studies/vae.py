"""The VAE study: does a pretrained encoder make a VAE converge faster and infer better? For
each seed, pretrain NAC, SimCLR and MoCo-v2 encoders for the same number of steps (as the
encoder study, ``nacvae.studies.encoders``, does; or borrow them from another study folder
with ``encoders_from``), then train a VAE from each of them and from a random encoder, twice:
with the backbone fine-tuned, and frozen (only the Gaussian heads and the decoder train, so
the inference quality comes from the pretrained features alone). Every VAE logs its
convergence curve (test ELBO and a cheap log p(x) at fixed fractions of training, on fixed
test images) and is measured at the end: importance-weighted log p(x), KL, active units, and
the inference gap split into its approximation and amortisation parts (``nacvae.eval.gap``).
Rows are written to ``seed-N/rows.json`` as each VAE is measured, so a study resumes seed by
seed and VAE by VAE (``resume=True``); the tables are in ``nacvae.studies.vae_report``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from nacvae.errors import ConfigError
from nacvae.files import check_name_lengths, write_json
from nacvae.registry import settings_for
from nacvae.runs import CONFIG, check_run_dir, create_run_dir, read_config, read_metrics
from nacvae.studies.folders import add_seconds, fix_plan, read_rows, seeds_to_run, stage_state, study_seconds
from nacvae.studies.presets import INITS, MODES, OBJECTIVES, VAE_OPTIONS, VAE_PRESETS, VAEStudyPreset, lookup_preset
from nacvae.studies.vae_report import ROW_KEYS, study_rows, write_results

# Pretraining settings that say how a run was executed, not what it trained.
NOT_COMPARED = ("device", "data_dir", "download", "checkpoint_every", "log_every", "threads")


def pretraining_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The pretraining settings (config keys) in which a finished run differs from the
    ones a study would have used. A length in epochs is not compared where both give it in
    steps (runs written before lengths had no default kept an unused epoch count)."""
    unused = {a for a, b in (("epochs", "steps"), ("warmup_epochs", "warmup_steps"))
              if saved.get(b) is not None and wanted.get(b) is not None}
    return sorted(k for k in set(saved) | set(wanted)
                  if k not in NOT_COMPARED and k not in unused and saved.get(k) != wanted.get(k))


def borrowed_encoder(study: Path, seed: int, objective: str, wanted: dict[str, Any]) -> Path:
    """``study``'s finished ``pretrain-<objective>`` run of ``seed``, checked to have been
    trained with the settings ``wanted`` (a ``PretrainConfig.to_dict()``)."""
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

    ``encoders_from``: a study folder (the encoder study's or another VAE study's) whose
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
    check_name_lengths(out)
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
    # Every seed's files are read before anything is trained (as in the encoder study).
    study_rows(out)
    study_seconds(out)
    fix_plan(out, header)
    results = None
    for seed in todo:
        seed_dir = out / f"seed-{seed}"
        rows_file = seed_dir / "rows.json"
        rows = read_rows(rows_file, ROW_KEYS) if rows_file.is_file() else []
        done = {(r["init"], r["mode"]) for r in rows}
        if all((i, m) in done for i in INITS for m in MODES):
            continue
        seed_dir.mkdir(exist_ok=True)
        started = time.time()
        for row in _run_seed(preset, vae_settings, seed, seed_dir, pretrain_overrides, done, data_dir, device,
                             progress, log, None if encoders_from is None else Path(encoders_from)):
            rows.append(row)
            write_json(rows_file, rows)
        add_seconds(seed_dir, time.time() - started)
        results = write_results(out, header)
    return results if results is not None else write_results(out, header)


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
            wanted = resolve_config(preset.data, objective=objective, seed=seed, **settings_for(objective, pretrain_overrides)).to_dict()
            runs[objective] = borrowed_encoder(encoders_from, seed, objective, wanted)
            continue
        run = seed_dir / f"pretrain-{objective}"
        runs[objective] = run
        if all((objective, m) in done for m in MODES):
            continue
        state = stage_state(run, log, f"[seed {seed}] {objective}")
        if state is None:
            continue
        log(f"[seed {seed}] pretraining {objective}")
        pretrain(resolve_config(preset.data, objective=objective, seed=seed, **settings_for(objective, pretrain_overrides)), run,
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
            state = stage_state(vae_run, log, f"[seed {seed}] VAE from {init}, {mode}")
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
