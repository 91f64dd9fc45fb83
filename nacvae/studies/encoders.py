"""The encoder study, the whole chain of the paper at a chosen scale: for each seed, pretrain
the preset's encoders (NAC, SimCLR and MoCo-v2 by default; NAC again at the preset's
retrieval p as "nac-retrieval"; the paper's other baselines InsDis, DeepBit, SSDH and
DistillHash on request, SSDH and DistillHash with the seed's SimCLR encoder as teacher),
every one for the same number of steps; evaluate each, and a random encoder of the same
architecture, with the linear probe, Hamming retrieval and code statistics; and train a VAE
from the random, NAC, SimCLR and MoCo-v2 initialisations and estimate its log-likelihood and
KL. Each seed's rows go to ``seed-N/rows.json`` as soon as they exist and the tables are
rebuilt after each seed, so a study stops and continues seed by seed with ``resume=True``
(finished stages kept, interrupted runs continued from their checkpoints), and separate
processes can run different seeds of one study at once (``only_seeds``). torch is imported
only when a study runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from nacvae.files import FolderLock, check_name_lengths, write_json
from nacvae.registry import check_recipe, recipe_of, settings_for
from nacvae.runs import check_run_dir, create_run_dir, read_metrics
from nacvae.studies.folders import add_seconds, fix_plan, read_rows, seeds_to_run, stage_state, study_seconds
from nacvae.studies.presets import (
    INITS, PRESETS, RETRIEVAL_NAC, TAUGHT, TEACHER_INIT, Preset, lookup_preset, method_budget,
    objective_of, resolve_methods
)
from nacvae.studies.report import COLUMNS, ROW_KEYS, study_rows, write_results


def run_study(preset: str | Preset, out: str | Path, seeds: int = 1, data_dir: str | None = None,
              device: str = "auto", progress: bool = True, log: Callable[[str], None] = print,
              flip_prob: float | None = None, resume: bool = False,
              only_seeds: list[int] | None = None, methods: list[str] | None = None,
              recipe: str = "own", vaes: bool = True) -> dict[str, Any]:
    """Run the chain for seeds 0..``seeds``-1 (or just ``only_seeds``) into ``out``;
    returns the results aggregated over every seed the folder holds.

    With ``resume`` an existing study folder is continued: rows already written are kept,
    stages already complete are reused and interrupted runs continue from their checkpoints.
    ``methods`` chooses the encoders (``ALL_INITS`` names; the preset's set by default).
    ``recipe`` "own" trains each method with its own recipe over the preset (``method_budget``),
    "shared" every method with the preset's settings. ``vaes=False`` evaluates the encoders
    and trains no VAE (their VAE columns stay empty).
    """
    from nacvae.devices import resolve_device
    from nacvae.train.config import resolve_config

    name, preset = lookup_preset(preset, PRESETS, "preset")
    check_recipe(recipe)
    todo = seeds_to_run(seeds, only_seeds)
    wanted = resolve_methods(preset, methods)
    out = Path(out)
    # Option values are checked before anything is written.
    given = {} if flip_prob is None else {"flip_prob": flip_prob}
    resolve_config(preset.data, **{**preset.pretrain, "arch": preset.arch, **given})
    check_name_lengths(out)
    if not (resume and out.is_dir()):
        check_run_dir(out, resume=False)
    torch_device = resolve_device(device)
    create_run_dir(out)
    pretrain_overrides = dict(preset.pretrain, arch=preset.arch, data_dir=data_dir, device=device)
    if flip_prob is not None:
        pretrain_overrides["flip_prob"] = flip_prob
    header = dict(preset=name, description=preset.description, data=preset.data, arch=preset.arch,
                  linear_protocol=preset.linear.get("protocol", "fast"), loglik_samples=preset.loglik_samples,
                  retrieval_empty_queries="excluded", retrieval_ties="gallery-index",
                  pretrain=dict(pretrain_overrides, data_dir=None), retrieval_flip_prob=preset.retrieval_flip_prob)
    if wanted != resolve_methods(preset, None):  # studies of the default set keep their earlier study.json
        header["methods"] = wanted
    if any(m in wanted for m in TAUGHT):
        header["teacher"] = f"the same seed's {TEACHER_INIT} encoder"
    if any(recipe_of(objective_of(m)) for m in wanted if m != "random"):  # studies without such methods keep their study.json
        header["recipe"] = recipe

    # Every seed's files are read before anything is trained, so that a damaged one stops
    # the study at once rather than after the seeds before it.
    study_rows(out)
    study_seconds(out)
    fix_plan(out, header)
    results = None
    for seed in todo:
        rows_file = out / f"seed-{seed}" / "rows.json"
        rows = read_rows(rows_file, ROW_KEYS) if rows_file.is_file() else []
        done = {r["init"] for r in rows}
        if all(i in done for i in wanted):
            continue

        def emit(row: dict[str, Any], rows=rows, rows_file=rows_file) -> None:
            rows.append(row)
            write_json(rows_file, rows)

        rows_file.parent.mkdir(exist_ok=True)
        started = time.time()
        # One process per seed folder; others may run other seeds of the study meanwhile.
        with FolderLock(rows_file.parent).acquire("seed folder"):
            if rows_file.is_file():  # another process may have finished the seed meanwhile
                rows[:] = read_rows(rows_file, ROW_KEYS)
                done = {r["init"] for r in rows}
            _run_seed(preset, seed, out / f"seed-{seed}", pretrain_overrides, wanted, done, data_dir, device,
                      torch_device, progress, log, emit, recipe, vaes)
        add_seconds(rows_file.parent, time.time() - started)
        results = write_results(out, header)
    if results is None:  # every seed was already complete
        results = write_results(out, header)
    return results


def _run_seed(preset: Preset, seed: int, seed_dir: Path, pretrain_overrides: dict[str, Any], wanted: list[str],
              done: set[str], data_dir: str | None, device: str, torch_device, progress: bool,
              log: Callable[[str], None], emit: Callable[[dict[str, Any]], None], recipe: str = "own",
              vaes: bool = True) -> None:
    from nacvae.eval.codes_eval import evaluate_codes
    from nacvae.eval.encoders import resolve_encoder
    from nacvae.eval.linear_eval import evaluate_linear
    from nacvae.eval.retrieval_eval import evaluate_retrieval
    from nacvae.eval.vae_runs import evaluate_run
    from nacvae.train.config import resolve_config
    from nacvae.train.pretrain import pretrain
    from nacvae.train.vae import resolve_vae_config, train_vae

    runs: dict[str, Path] = {}
    for init in [i for i in wanted if i != "random"]:
        objective = objective_of(init)
        overrides = method_budget(objective, pretrain_overrides, recipe)
        if init == RETRIEVAL_NAC:
            overrides["flip_prob"] = preset.retrieval_flip_prob
        if init in TAUGHT:
            overrides["teacher"] = str(runs[TEACHER_INIT])  # trained earlier: simclr precedes them
        run = seed_dir / f"pretrain-{init}"
        runs[init] = run
        if init in done:
            continue
        state = stage_state(run, log, f"[seed {seed}] {init}")
        if state is None:
            continue
        log(f"[seed {seed}] pretraining {init}")
        cfg = resolve_config(preset.data, objective=objective, seed=seed, recipe=recipe,
                             **settings_for(objective, overrides))
        pretrain(cfg, run, resume=state, progress=progress)
    for init in wanted:
        if init in done:
            continue
        log(f"[seed {seed}] evaluating the {init} encoder")
        if init == "random":
            encoder, meta, data, ddir = resolve_encoder(init="random", arch=preset.arch, data=preset.data,
                                                        data_dir=data_dir, seed=seed)
        else:
            encoder, meta, data, ddir = resolve_encoder(run=runs[init])
        linear = evaluate_linear(encoder, data, ddir, seed=seed, device=torch_device, **preset.linear)
        retrieval = evaluate_retrieval(encoder, data, ddir, seed=seed, device=torch_device)
        paper = evaluate_retrieval(encoder, data, ddir, seed=seed, device=torch_device, ranking="paper")
        codes = evaluate_codes(encoder, data, ddir, device=torch_device)
        row = {
            "seed": seed, "init": init,
            "linear_test_accuracy": linear["test_accuracy"], "linear_train_accuracy": linear["train_accuracy"],
            "retrieval_map": retrieval["map"], "retrieval_map_paper_ranking": paper["map"],
            "distinct_codes": codes["distinct_codes"], "mean_pairwise_hamming": codes["mean_pairwise_hamming"],
            # Paths relative to the study folder, so that a study can be moved or published.
            "pretrain_run": None if init == "random" else f"{seed_dir.name}/{runs[init].name}",
            "final_code_abs_mean": None if init == "random" else _last_train_value(runs[init], "code_abs_mean"),
            "vae_run": None,
        }
        for key, _, _, _ in COLUMNS:
            row.setdefault(key, None)
        if init in INITS and vaes:  # the new baselines and the retrieval NAC get no VAE
            vae_run = seed_dir / f"vae-{init}"
            state = stage_state(vae_run, log, f"[seed {seed}] VAE from {init}")
            if state is not None:
                log(f"[seed {seed}] training a VAE from the {init} encoder")
                vae_cfg = resolve_vae_config(preset.data, init=init, arch=preset.arch, seed=seed, data_dir=data_dir,
                                             device=device, encoder=None if init == "random" else str(runs[init]),
                                             **preset.vae)
                train_vae(vae_cfg, vae_run, resume=state, progress=progress)
            loglik = evaluate_run(vae_run, samples=preset.loglik_samples, num_images=preset.loglik_images,
                                  seed=seed, device=device)
            row.update({
                "vae_loglik_nats": loglik["loglik_nats"], "vae_bits_per_dim": loglik["bits_per_dim"],
                "vae_elbo": loglik["elbo"], "vae_kl": loglik["kl"], "vae_active_units": loglik["active_units"],
                "vae_run": f"{seed_dir.name}/{vae_run.name}",
            })
        emit(row)


def _last_train_value(run: Path, key: str) -> float | None:
    rows = [r for r in read_metrics(run) if r.get("event") == "train" and key in r]
    return rows[-1][key] if rows else None
