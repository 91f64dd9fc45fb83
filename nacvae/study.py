"""The whole chain of the paper at a chosen scale: pretrain, evaluate, transfer into VAEs.

For each seed: pretrain NAC, SimCLR and MoCo-v2 encoders, every one for the same number
of steps; evaluate each, and a random encoder of the same architecture, with the linear
probe, Hamming retrieval and code statistics; train a VAE from each initialisation and
estimate its log-likelihood and KL. As in the paper, NAC runs at p = 0.1 for
classification and at a larger p for retrieval: a preset with ``retrieval_flip_prob``
adds a second NAC encoder ("nac-retrieval", same steps) that is evaluated like the others
but gets no VAE. ``methods`` chooses the encoders: the paper's other baselines (InsDis,
DeepBit, SSDH, DistillHash) are trained on request for the same steps, evaluated like the
others and get no VAE; SSDH and DistillHash take the seed's SimCLR encoder as teacher.

Each seed's rows are written to ``seed-N/rows.json`` as soon as they exist, and the
tables are rebuilt from every seed folder after each seed. A study can therefore be
stopped and continued seed by seed with ``resume=True`` (finished stages are kept, an
interrupted pretraining or VAE run continues from its checkpoint), and separate processes
can run different seeds of one study at once (``only_seeds``).
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from nacvae.errors import ConfigError
from nacvae.files import FolderLock, write_json, write_text
from nacvae.runs import CHECKPOINT, CONFIG, check_run_dir, create_run_dir, read_config, read_metrics

OBJECTIVES = ("nac", "simclr", "moco")
INITS = ("random",) + OBJECTIVES
RETRIEVAL_NAC = "nac-retrieval"  # NAC at the preset's retrieval p; evaluated, no VAE
# The paper's other baselines; evaluated, no VAE. SSDH and DistillHash take their pair
# similarities from the same seed's SimCLR encoder, which is trained for them if not asked for.
BASELINES = ("insdis", "deepbit", "ssdh", "distillhash")
TEACHER_INIT = "simclr"
# Trained with the same seed's TEACHER_INIT encoder as --teacher: its features label SSDH's
# and DistillHash's pairs, and DeepBit's hash layer trains on its frozen backbone.
TAUGHT = ("deepbit", "ssdh", "distillhash")
ALL_INITS = INITS + (RETRIEVAL_NAC,) + BASELINES


@dataclass
class Preset:
    """A study's scale. ``pretrain`` / ``vae`` are passed to the training configurations."""

    data: str
    arch: str
    description: str
    pretrain: dict[str, Any] = field(default_factory=dict)
    retrieval_flip_prob: float | None = None
    linear: dict[str, Any] = field(default_factory=dict)
    vae: dict[str, Any] = field(default_factory=dict)
    loglik_samples: int = 1000
    loglik_images: int | None = None
    methods: tuple[str, ...] | None = None  # encoders of the study; None = random, nac, simclr, moco (+ nac-retrieval)


PRESETS: dict[str, Preset] = {
    # The README's first command: under 10 minutes on 2 quiet CPU cores. Every encoder
    # trains 1,500 steps (about 136 epochs), 500 of them warm-up: NAC's code magnitude
    # has flattened by the end (docs/results.md). The retrieval encoder uses the p that
    # gave the best mAP in the noise sweep on digits (p = 0.2 of 0.05 ... 0.45).
    "digits": Preset(
        data="digits", arch="smallconv",
        description="scikit-learn digits (1,438 train / 359 test, 8x8), small conv net, 1,500 steps per encoder",
        pretrain=dict(steps=1500, warmup_steps=500, batch_size=128),
        retrieval_flip_prob=0.2,
        linear=dict(protocol="fast", epochs=100, batch_size=256),
        vae=dict(epochs=30, batch_size=128, latent_dim=16),
        loglik_samples=500,
    ),
    # The CPU-scale study on real data: encoders pretrained on the retrieval protocol's
    # 5,000-image subset (500 per class, as the paper's hashing runs) and evaluated on the
    # full splits; VAEs on all 60,000 training images. About an hour of CPU time a seed (one
    # core; 36 minutes on two quiet ones).
    "fashion-mnist-cpu": Preset(
        data="fashion-mnist", arch="smallconv",
        description="Fashion-MNIST (28x28), small conv net pretrained 1,400 steps on 5,000 images, VAEs 1 epoch",
        pretrain=dict(subset="retrieval", steps=1400, warmup_steps=500, batch_size=128, optimizer="lars", lr=3.0),
        retrieval_flip_prob=0.2,
        linear=dict(protocol="fast", epochs=30, batch_size=1000),
        vae=dict(epochs=1, batch_size=256, latent_dim=32),
        loglik_samples=100, loglik_images=500,
    ),
    # The paper's CIFAR-10 protocols (GPU; see experiments/): classification at p = 0.1,
    # 50,000 steps; the retrieval encoder at p = 0.4 on the same budget.
    "cifar10-paper": Preset(
        data="cifar10", arch="resnet50",
        description="CIFAR-10, ResNet-50, LARS lr 3.0, batch 1000, 1000 epochs, p = 0.1 (the paper's)",
        pretrain=dict(epochs=1000, batch_size=1000, optimizer="lars", lr=3.0, warmup_steps=500, flip_prob=0.1),
        retrieval_flip_prob=0.4,
        linear=dict(protocol="paper", epochs=100, batch_size=1000),
        vae=dict(epochs=200, batch_size=256, latent_dim=64),
        loglik_samples=5000,
    ),
}


# Fashion-MNIST at the CPU scale with the paper's other baselines beside NAC, SimCLR and
# MoCo-v2, every encoder pretrained for the same 1,400 steps (docs/results.md).
PRESETS["fashion-mnist-cpu-baselines"] = replace(
    PRESETS["fashion-mnist-cpu"],
    description="Fashion-MNIST (28x28), small conv net pretrained 1,400 steps on 5,000 images, with InsDis, DeepBit, "
                "SSDH and DistillHash (teacher: the seed's SimCLR encoder), VAEs 1 epoch",
    methods=INITS + (RETRIEVAL_NAC,) + BASELINES,
)


def default_methods(preset: Preset) -> tuple[str, ...]:
    """The encoders a preset trains and evaluates unless --methods says otherwise."""
    if preset.methods is not None:
        return preset.methods
    return INITS + ((RETRIEVAL_NAC,) if preset.retrieval_flip_prob is not None else ())


def resolve_methods(preset: Preset, methods: list[str] | tuple[str, ...] | None) -> list[str]:
    """The study's encoders in table order, with the teacher SSDH and DistillHash need."""
    chosen = list(default_methods(preset) if methods is None else methods)
    unknown = [m for m in chosen if m not in ALL_INITS]
    if unknown or not chosen:
        raise ConfigError(f"Unknown method '{unknown[0] if unknown else ''}' for --methods; choose from "
                          f"{', '.join(ALL_INITS)}.")
    if RETRIEVAL_NAC in chosen and preset.retrieval_flip_prob is None:
        raise ConfigError(f"This preset has no retrieval flip probability, so it cannot train {RETRIEVAL_NAC}.")
    if any(m in TAUGHT for m in chosen) and TEACHER_INIT not in chosen:
        chosen.append(TEACHER_INIT)
    return [i for i in ALL_INITS if i in chosen]


def _summary(values: list[float]) -> dict[str, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values)}


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


def lookup_preset(preset, presets: dict[str, Any], what: str) -> tuple[str, Any]:
    """(name, preset) of a preset given by name in ``presets``, or ("custom", it) for an object."""
    if not isinstance(preset, str):
        return "custom", preset
    if preset not in presets:
        raise ConfigError(f"Unknown {what} '{preset}'; choose one of {', '.join(presets)}.")
    return preset, presets[preset]


def seeds_to_run(seeds: int, only_seeds: list[int] | None) -> list[int]:
    """Seeds 0..``seeds``-1, or the ``only_seeds`` given, sorted and without repeats."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}.")
    todo = list(range(seeds)) if only_seeds is None else sorted(set(only_seeds))
    if not todo or any(s < 0 for s in todo):
        raise ConfigError(f"Seeds must be non-negative integers, got {only_seeds}.")
    return todo


def run_study(preset: str | Preset, out: str | Path, seeds: int = 1, data_dir: str | None = None,
              device: str = "auto", progress: bool = True, log: Callable[[str], None] = print,
              flip_prob: float | None = None, resume: bool = False,
              only_seeds: list[int] | None = None, methods: list[str] | None = None) -> dict[str, Any]:
    """Run the chain for seeds 0..``seeds``-1 (or just ``only_seeds``) into ``out``;
    returns the results aggregated over every seed the folder holds.

    With ``resume`` an existing study folder is continued: rows already written are kept,
    stages already complete are reused and interrupted runs continue from their checkpoints.
    ``methods`` chooses the encoders (``ALL_INITS`` names; the preset's set by default).
    """
    from nacvae.train.config import resolve_device

    name, preset = lookup_preset(preset, PRESETS, "preset")
    todo = seeds_to_run(seeds, only_seeds)
    wanted = resolve_methods(preset, methods)
    out = Path(out)
    # Option values are checked before anything is written.
    from nacvae.train.config import resolve_config

    given = {} if flip_prob is None else {"flip_prob": flip_prob}
    resolve_config(preset.data, **{**preset.pretrain, "arch": preset.arch, **given})
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

    fix_plan(out, header)
    results = None
    for seed in todo:
        rows_file = out / f"seed-{seed}" / "rows.json"
        rows = json.loads(rows_file.read_text()) if rows_file.is_file() else []
        done = {r["init"] for r in rows}
        if all(i in done for i in wanted):
            continue

        def emit(row: dict[str, Any], rows=rows, rows_file=rows_file) -> None:
            rows.append(row)
            _write_json(rows_file, rows)

        rows_file.parent.mkdir(exist_ok=True)
        started = time.time()
        # One process per seed folder; others may run other seeds of the study meanwhile.
        with FolderLock(rows_file.parent).acquire("seed folder"):
            if rows_file.is_file():  # another process may have finished the seed meanwhile
                rows[:] = json.loads(rows_file.read_text())
                done = {r["init"] for r in rows}
            _run_seed(preset, seed, out / f"seed-{seed}", pretrain_overrides, wanted, done, data_dir, device,
                      torch_device, progress, log, emit)
        add_seconds(rows_file.parent, time.time() - started)
        results = _write_results(out, header)
    if results is None:  # every seed was already complete
        results = _write_results(out, header)
    return results


def study_rows(out: Path) -> list[dict[str, Any]]:
    """Every row of every seed folder of a study, in (seed, encoder) order."""
    rows = []
    for path in Path(out).glob("seed-*/rows.json"):
        rows.extend(json.loads(path.read_text()))
    order = {init: i for i, init in enumerate(ALL_INITS)}
    return sorted(rows, key=lambda r: (r["seed"], order.get(r["init"], len(order))))


def _write_results(out: Path, header: dict[str, Any]) -> dict[str, Any]:
    """results.json, results.md and figures/ from every seed folder's rows."""
    rows = study_rows(out)
    results = aggregate(rows)
    results.update(header, seeds=len({r["seed"] for r in rows}), **study_seconds(out))
    _write_json(out / "results.json", results)
    write_text(out / "results.md", markdown_table(results))
    write_figures(results, rows, out)
    return results


def _stage(run: Path, log: Callable[[str], None], label: str) -> bool | None:
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


def _run_seed(preset: Preset, seed: int, seed_dir: Path, pretrain_overrides: dict[str, Any], wanted: list[str],
              done: set[str], data_dir: str | None, device: str, torch_device, progress: bool,
              log: Callable[[str], None], emit: Callable[[dict[str, Any]], None]) -> None:
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
        objective = "nac" if init == RETRIEVAL_NAC else init
        overrides = dict(pretrain_overrides)
        if init == RETRIEVAL_NAC:
            overrides["flip_prob"] = preset.retrieval_flip_prob
        if init in TAUGHT:
            overrides["teacher"] = str(runs[TEACHER_INIT])  # trained earlier: simclr precedes them
        run = seed_dir / f"pretrain-{init}"
        runs[init] = run
        if init in done:
            continue
        state = _stage(run, log, f"[seed {seed}] {init}")
        if state is None:
            continue
        log(f"[seed {seed}] pretraining {init}")
        cfg = resolve_config(preset.data, objective=objective, seed=seed, **overrides)
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
        if init in INITS:  # the new baselines and the retrieval NAC get no VAE
            vae_run = seed_dir / f"vae-{init}"
            state = _stage(vae_run, log, f"[seed {seed}] VAE from {init}")
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
                    table[init][key] = _summary(values)
    return {"table": table, "rows": rows}


def encoder_label(init: str, results: dict[str, Any]) -> str:
    pretrain = results.get("pretrain") or {}
    if init == "nac":
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
    steps = (results.get("pretrain") or {}).get("steps")
    budget = f" Every encoder pretrained {steps} steps." if steps else ""
    caption = (f"\n{results.get('description', '')}; mean ± standard deviation over {n} seed(s).{budget} "
               f"Linear probe: {results.get('linear_protocol', 'fast')} protocol. Retrieval: Hamming ranking, ties by "
               f"gallery index, queries without a relevant item excluded (and the paper code's {{0,1}} inner-product "
               f"ranking beside it). VAE: importance-weighted log p(x) with K = {results.get('loglik_samples')} "
               f"samples on the test split.\n")
    return "\n".join(lines) + "\n" + caption


def write_figures(results: dict[str, Any], rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    table = results["table"]
    inits = [i for i in ALL_INITS if i in table]  # a fixed order, whatever order JSON gave
    fig, axes = plt.subplots(3, 3, figsize=(16, 10))
    colours = {"random": "#777777", "nac": "#d62728", "simclr": "#1f77b4", "moco": "#2ca02c",
               RETRIEVAL_NAC: "#ff7f0e", "insdis": "#9467bd", "deepbit": "#8c564b", "ssdh": "#e377c2",
               "distillhash": "#17becf"}
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


def fix_plan(out: Path, header: dict[str, Any]) -> None:
    """Write what the study is (``study.json``) once; a resumed study must be the same study."""
    plan = json.loads(json.dumps(header))  # JSON-normalised, so that it compares equal to what is read back
    if (out / "study.json").is_file():
        if json.loads((out / "study.json").read_text()) != plan:
            raise ConfigError(f"{out} holds a study with other settings; continue it with the same preset and "
                              f"options, or choose another --out.")
    else:
        _write_json(out / "study.json", plan)


def add_seconds(seed_dir: Path, seconds: float) -> None:
    """Add ``seconds`` to the seed's wall time, summed over the sessions that ran it."""
    timing = seed_dir / "seconds.json"
    before = json.loads(timing.read_text())["seconds"] if timing.is_file() else 0.0
    _write_json(timing, {"seconds": before + seconds})


def study_seconds(out: Path) -> dict[str, Any]:
    """The study's wall time in all and per seed, from its seed folders."""
    seconds = {int(t.parent.name.split("-")[1]): json.loads(t.read_text())["seconds"]
               for t in out.glob("seed-*/seconds.json")}
    return {"seconds": sum(seconds.values()), "seconds_per_seed": {str(k): v for k, v in sorted(seconds.items())}}


def _write_json(path: Path, value: Any) -> None:
    write_json(path, value)
