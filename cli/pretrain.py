"""``nacvae pretrain``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from nacvae import presets, registry
from nacvae.cli.launcher import report_to_launcher
from nacvae.cli.options import (
    CONFIG_HELP, FRACTIONS, check_resume, data_options, method_options, shown, with_config_file,
)
from nacvae.runs import read_config
from nacvae.train.config import PretrainConfig


@click.command()
@click.option("--config", "config_file", type=click.Path(), default=None, help=CONFIG_HELP)
@data_options()
@click.option("--subset", type=click.Choice(["retrieval"]), default=None,
              help="Train on the retrieval protocol's unsupervised training subset (5,000 images for CIFAR-10).")
@click.option("--objective", type=click.Choice(registry.names()), default=None,
              help=f"The pretraining method (docs/method.md) {shown(PretrainConfig, 'objective')}.")
@click.option("--recipe", type=click.Choice(registry.RECIPES), default=None,
              help="own: the method's own recipe (its head, start, views, optimiser, schedule and binarisation; "
                   "docs/method.md); shared: NAC's for every method, as an ablation [own].")
@click.option("--arch", default=None,
              help=f"Backbone: smallconv, resnet18, resnet50 or vgg16_bn [{presets.help_values('arch')}].")
@click.option("--epochs", type=int, default=None, help=f"Training epochs [{presets.help_values('epochs')}].")
@click.option("--steps", type=int, default=None,
              help=f"Training length in optimisation steps, instead of --epochs [{presets.help_values('steps')}].")
@click.option("--batch-size", type=int, default=None,
              help="Images per step over all processes (under torchrun each takes an equal share); each is seen in "
                   f"two views [{presets.help_values('batch_size')}].")
@click.option("--optimizer", type=click.Choice(["lars", "sgd", "adam"]), default=None,
              help=f"[{presets.help_values('optimizer')}]; a method's recipe may set its own.")
@click.option("--lr", type=float, default=None,
              help=f"Peak learning rate [{presets.help_values('lr')}]; a method's recipe may set its own.")
@click.option("--weight-decay", type=float, default=None, help=f"{shown(PretrainConfig, 'weight_decay')}; a method's recipe may set its own.")
@click.option("--schedule", type=click.Choice(["cosine", "step"]), default=None,
              help="After the warm-up: cosine decay to 0, or a step rate divided by 10 at each --lr-drops "
                   f"{shown(PretrainConfig, 'schedule')}; a method's recipe may set its own.")
@click.option("--lr-drops", type=FRACTIONS, default=None, metavar="F[,F...]",
              help="--schedule step: the fractions of the run at which the rate is divided by 10 (none: constant).")
@click.option("--warmup-epochs", type=int, default=None, help=f"Linear warm-up before the cosine decay, in epochs [{presets.help_values('warmup_epochs')}].")
@click.option("--warmup-steps", type=int, default=None,
              help=f"Linear warm-up in steps, instead of --warmup-epochs [{presets.help_values('warmup_steps')}]; NAC "
                   "needs a long one (docs/method.md).")
@click.option("--code-dim", type=int, default=None, help=f"Code length D (projection output size) {shown(PretrainConfig, 'code_dim')}.")
@click.option("--image-size", type=int, default=None,
              help="Side that folder images are resized to [32]; the crop size of imagenet, flickr25k and shards [224].")
@click.option("--workers", type=int, default=None,
              help="DataLoader worker processes that decode streamed datasets [the cores but one, at most 8].")
@click.option("--skip-bad-images", is_flag=True, default=None,
              help="Streamed datasets: replace an image that cannot be read by the next readable one (a shard's by "
                   "the next sample) and record it in config.json, instead of stopping; it may be turned on with "
                   "--resume.")
@click.option("--seed", type=int, default=None, help=f"Random seed; the same seed repeats the run exactly on CPU {shown(PretrainConfig, 'seed')}.")
@click.option("--device", default=None, help=f"auto, cpu, cuda or cuda:N; under torchrun auto, cpu or cuda {shown(PretrainConfig, 'device')}.")
@click.option("--amp/--no-amp", default=None,
              help="bf16 autocast for the encoder (the objectives and the optimiser stay float32) [$NACVAE_AMP, "
                   "else auto: on for GPUs with native bf16, Ampere and newer; on for CPUs with native bf16 "
                   "(AVX512-BF16, AMX) when a timing of the encoder at the current load shows it at least 1.15x "
                   "faster; off otherwise]. config.json records the choice and why; --resume keeps it.")
@click.option("--compile", "compile_", is_flag=True, default=None, help="torch.compile the backbone (slow first steps).")
@click.option("--sync-bn", is_flag=True, default=None,
              help="Under torchrun on GPUs, the trained encoder's batch-norm statistics over the global batch "
                   "(SyncBatchNorm; not with --compile).")
@click.option("--dist-timeout", type=float, default=None, metavar="MINUTES",
              help="Under torchrun, how long a process may wait in a collective (for example while rank 0 "
                   "downloads or decodes the data) before the job is aborted [30].")
@click.option("--monitor-every", type=int, default=None, metavar="STEPS",
              help="Score k-NN top-1 and retrieval mAP of the current encoder on fixed subsets every STEPS steps, "
                   f"into metrics.jsonl and TensorBoard; 0 turns it off [{presets.help_values('monitor_every')}].")
@method_options()
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run folder to create (default: a new folder under $NACVAE_RUNS or ./runs).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out with its saved configuration.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def pretrain(out: str | None, resume: bool, quiet: bool, compile_: bool | None, dist_timeout: float | None,
             config_file: str | None, **options) -> None:
    """Pretrain an encoder with one of the methods (--objective, NAC by default) and write a
    run folder.

    Runs on several GPUs or machines when started by torchrun (docs/scaling.md).
    """
    from nacvae import distributed
    from nacvae.errors import ConfigError, NacvaeError
    from nacvae.runs import default_runs_root, new_run_name
    from nacvae.train.config import resolve_config
    from nacvae.train.pretrain import pretrain as run_pretrain

    try:
        if resume and out is None:
            raise ConfigError("--resume needs --out, the run folder to continue.")
        if out is None and distributed.world_size() > 1:
            raise ConfigError("Under torchrun pass --out, so that every process uses the same run folder.")
        if resume and config_file is not None:
            raise ConfigError("--resume continues a run with its saved settings, so --config cannot be given with it.")
        if resume:
            check_resume(out, "pretrain", dict(options, compile=compile_), parameter={"compile": "compile_"})
        # Still resumed below: that checks the checkpoint, and trains no step.
        complete = resume and _already_complete(out)
        options["compile"] = compile_
        if config_file is not None:
            options = with_config_file(config_file, "pretrain", options, parameter={"compile": "compile_"})
        data = options.pop("data")
        cfg = resolve_config(data, **options)  # options left unset (None) are not given
        started = time.perf_counter()
        if out is None:
            tag = cfg.objective + ("-momentum" if cfg.options.get("momentum") else "")
            out = str(default_runs_root() / new_run_name("pretrain", data, tag))
        run = run_pretrain(cfg, Path(out), resume=resume, progress=not quiet, dist_timeout=dist_timeout)
    except NacvaeError as exc:
        # A lost process is reported by every survivor: rank 0 may be the one lost.
        if not distributed.is_main() and not isinstance(exc, distributed.ProcessLost):
            report_to_launcher(exc)  # torchrun's summary shows it, should this rank stop first
            sys.exit(2)  # every rank meets the same error; rank 0 prints it
        raise
    if distributed.is_main() and complete:
        total = read_config(run).get("total_steps")
        click.echo(f"The run in {run} was already complete ({total} steps); nothing was trained.")
    elif distributed.is_main():
        click.echo(_summary(run, time.perf_counter() - started))


def _already_complete(out: str) -> bool:
    """Whether ``--resume`` is given a run that has nothing left to train."""
    return read_config(Path(out)).get("status") == "complete"


def _summary(run: Path, seconds: float) -> str:
    """The end of a run: its length, last logged loss and time, then its folder."""
    from nacvae.runs import read_metrics

    losses = [r["loss"] for r in read_metrics(run) if r.get("event") == "train" and "loss" in r]
    loss = f"final loss {losses[-1]:.4f}" if losses else "no loss logged"
    minutes, secs = divmod(round(seconds), 60)
    # "Run folder: PATH" stays a line of its own: scripts (experiments/gpu_summary.py) read it.
    return f"Finished {read_config(run).get('total_steps')} steps, {loss}, in {minutes}m{secs:02d}s.\nRun folder: {run}"
