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
from nacvae.studies.stages import Stage, StagePool, choose_jobs, run_stages


def run_study(preset: str | Preset, out: str | Path, seeds: int = 1, data_dir: str | None = None,
              device: str = "auto", progress: bool = True, log: Callable[[str], None] = print,
              flip_prob: float | None = None, resume: bool = False,
              only_seeds: list[int] | None = None, methods: list[str] | None = None,
              recipe: str = "own", vaes: bool = True, jobs: int | None = 1) -> dict[str, Any]:
    """Run the chain for seeds 0..``seeds``-1 (or just ``only_seeds``) into ``out``;
    returns the results aggregated over every seed the folder holds.

    With ``resume`` an existing study folder is continued: rows already written are kept,
    stages already complete are reused and interrupted runs continue from their checkpoints.
    ``methods`` chooses the encoders (``ALL_INITS`` names; the preset's set by default).
    ``recipe`` "own" trains each method with its own recipe over the preset (``method_budget``),
    "shared" every method with the preset's settings. ``vaes=False`` evaluates the encoders
    and trains no VAE (their VAE columns stay empty). ``jobs`` worker processes run the
    independent stages of a seed side by side (None: one per free core on a CPU, each on one
    thread; ``nacvae.studies.stages``); 1 runs everything in this process.
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
    import torch

    # At most one job per encoder: a seed can run no more stages than that at once.
    jobs, threads_per_job = choose_jobs(jobs, torch_device.type, torch.get_num_threads(), width=len(wanted))
    with StagePool(jobs, threads_per_job) as pool:
        results = _run_seeds(preset, out, todo, wanted, header, pretrain_overrides, data_dir, device, progress, log,
                             recipe, vaes, pool if jobs > 1 else None)
    return results


def _run_seeds(preset: Preset, out: Path, todo: list[int], wanted: list[str], header: dict[str, Any],
               pretrain_overrides: dict[str, Any], data_dir: str | None, device: str, progress: bool,
               log: Callable[[str], None], recipe: str, vaes: bool, pool: StagePool | None) -> dict[str, Any]:
    results, announced = None, False
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
            if pool is not None and not announced:
                log(f"{pool.jobs} worker processes of {pool.threads_per_job} thread(s) each run the independent "
                    "stages")
                announced = True
            _run_seed(preset, seed, out / f"seed-{seed}", pretrain_overrides, wanted, done, data_dir, device,
                      progress, log, emit, recipe, vaes, pool)
        add_seconds(rows_file.parent, time.time() - started)
        results = write_results(out, header)
    if results is None:  # every seed was already complete
        results = write_results(out, header)
    return results


def _run_seed(preset: Preset, seed: int, seed_dir: Path, pretrain_overrides: dict[str, Any], wanted: list[str],
              done: set[str], data_dir: str | None, device: str, progress: bool,
              log: Callable[[str], None], emit: Callable[[dict[str, Any]], None], recipe: str = "own",
              vaes: bool = True, pool: StagePool | None = None) -> None:
    """One seed as stages: each encoder's pretraining (SSDH's, DistillHash's and DeepBit's
    after their teacher's), then its evaluation and its VAE (each after the pretraining), rows
    emitted in ``wanted`` order as they complete. In one process the stages run in the order
    the study always ran them."""
    from nacvae.train.config import resolve_config

    serial = pool is None or pool.jobs <= 1
    bars = progress and serial  # the bars of parallel stages would interleave
    runs: dict[str, Path] = {}
    stages: list[Stage] = []
    for init in [i for i in wanted if i != "random"]:
        objective = objective_of(init)
        overrides = method_budget(objective, pretrain_overrides, recipe)
        if init == RETRIEVAL_NAC:
            overrides["flip_prob"] = preset.retrieval_flip_prob
        after: tuple[str, ...] = ()
        if init in TAUGHT:
            overrides["teacher"] = str(runs[TEACHER_INIT])  # trained earlier: simclr precedes them
            after = (f"pretrain {TEACHER_INIT}",) if f"pretrain {TEACHER_INIT}" in {s.name for s in stages} else ()
        run = seed_dir / f"pretrain-{init}"
        runs[init] = run
        if init in done:
            continue
        state = stage_state(run, log, f"[seed {seed}] {init}")
        if state is None:
            continue
        cfg = resolve_config(preset.data, objective=objective, seed=seed, recipe=recipe,
                             **settings_for(objective, overrides))
        stages.append(Stage(f"pretrain {init}", _pretrain_stage, dict(cfg=cfg, run=run, resume=state, progress=bars),
                            after=after, announce=f"[seed {seed}] pretraining {init}"))
    # After every pretraining, per encoder its evaluation and its VAE: the order the stages
    # run in one process, and in parallel the priority among the stages ready to start.
    pretrained = {s.name for s in stages}
    todo = [init for init in wanted if init not in done]
    with_vae = set()
    for init in todo:
        after = (f"pretrain {init}",) if f"pretrain {init}" in pretrained else ()
        stages.append(Stage(f"evaluate {init}", _evaluate_stage,
                            dict(preset=preset, seed=seed, init=init, run=runs.get(init), data_dir=data_dir,
                                 device=device), after=after,
                            announce=f"[seed {seed}] evaluating the {init} encoder"))
        if init in INITS and vaes:  # the new baselines and the retrieval NAC get no VAE
            with_vae.add(init)
            stages.append(Stage(f"vae {init}", _vae_stage,
                                dict(preset=preset, seed=seed, init=init, vae_run=seed_dir / f"vae-{init}",
                                     encoder=runs.get(init), data_dir=data_dir, device=device, progress=bars,
                                     log=log if serial else None), after=after,
                                announce=None if serial else f"[seed {seed}] training a VAE from the {init} encoder"))

    finished: dict[str, Any] = {}
    pending = list(todo)

    def on_done(name: str, result: Any) -> None:
        finished[name] = result
        while pending:  # rows in ``wanted`` order, each once its evaluation and VAE are in
            init = pending[0]
            if f"evaluate {init}" not in finished or (init in with_vae and f"vae {init}" not in finished):
                return
            row = finished[f"evaluate {init}"]
            if init in with_vae:
                row.update(finished[f"vae {init}"])
            emit(row)
            pending.pop(0)

    run_stages(stages, pool, log, on_done)


def _pretrain_stage(cfg, run: Path, resume: bool, progress: bool) -> None:
    from nacvae.train.pretrain import pretrain

    pretrain(cfg, run, resume=resume, progress=progress)


def _evaluate_stage(preset: Preset, seed: int, init: str, run: Path | None, data_dir: str | None,
                    device: str) -> dict[str, Any]:
    """The encoder's row: linear probe, retrieval (both rankings) and code statistics."""
    from nacvae.devices import resolve_device
    from nacvae.eval.codes_eval import evaluate_codes
    from nacvae.eval.encoders import resolve_encoder
    from nacvae.eval.linear_eval import evaluate_linear
    from nacvae.eval.retrieval_eval import evaluate_retrieval

    torch_device = resolve_device(device)
    if init == "random":
        encoder, meta, data, ddir = resolve_encoder(init="random", arch=preset.arch, data=preset.data,
                                                    data_dir=data_dir, seed=seed)
    else:
        encoder, meta, data, ddir = resolve_encoder(run=run)
    linear = evaluate_linear(encoder, data, ddir, seed=seed, device=torch_device, **preset.linear)
    retrieval = evaluate_retrieval(encoder, data, ddir, seed=seed, device=torch_device)
    paper = evaluate_retrieval(encoder, data, ddir, seed=seed, device=torch_device, ranking="paper")
    codes = evaluate_codes(encoder, data, ddir, device=torch_device)
    seed_dir = None if run is None else run.parent
    row = {
        "seed": seed, "init": init,
        "linear_test_accuracy": linear["test_accuracy"], "linear_train_accuracy": linear["train_accuracy"],
        "retrieval_map": retrieval["map"], "retrieval_map_paper_ranking": paper["map"],
        "distinct_codes": codes["distinct_codes"], "mean_pairwise_hamming": codes["mean_pairwise_hamming"],
        # Paths relative to the study folder, so that a study can be moved or published.
        "pretrain_run": None if run is None else f"{seed_dir.name}/{run.name}",
        "final_code_abs_mean": None if run is None else _last_train_value(run, "code_abs_mean"),
        "vae_run": None,
    }
    for key, _, _, _ in COLUMNS:
        row.setdefault(key, None)
    return row


def _vae_stage(preset: Preset, seed: int, init: str, vae_run: Path, encoder: Path | None, data_dir: str | None,
               device: str, progress: bool, log: Callable[[str], None] | None) -> dict[str, Any]:
    """A VAE from the encoder (trained, or continued), and its log-likelihood columns."""
    from nacvae.eval.vae_runs import evaluate_run
    from nacvae.train.vae import resolve_vae_config, train_vae

    state = stage_state(vae_run, log or (lambda msg: None), f"[seed {seed}] VAE from {init}")
    if state is not None:
        if log is not None:
            log(f"[seed {seed}] training a VAE from the {init} encoder")
        vae_cfg = resolve_vae_config(preset.data, init=init, arch=preset.arch, seed=seed, data_dir=data_dir,
                                     device=device, encoder=None if encoder is None else str(encoder), **preset.vae)
        train_vae(vae_cfg, vae_run, resume=state, progress=progress)
    loglik = evaluate_run(vae_run, samples=preset.loglik_samples, num_images=preset.loglik_images,
                          seed=seed, device=device)
    return {
        "vae_loglik_nats": loglik["loglik_nats"], "vae_bits_per_dim": loglik["bits_per_dim"],
        "vae_elbo": loglik["elbo"], "vae_kl": loglik["kl"], "vae_active_units": loglik["active_units"],
        "vae_run": f"{vae_run.parent.name}/{vae_run.name}",
    }


def _last_train_value(run: Path, key: str) -> float | None:
    rows = [r for r in read_metrics(run) if r.get("event") == "train" and key in r]
    return rows[-1][key] if rows else None
