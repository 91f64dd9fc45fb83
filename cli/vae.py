"""``nacvae vae`` (train a VAE from a pretrained encoder) and ``nacvae eval loglik``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from nacvae import presets, registry
from nacvae.cli.options import CONFIG_HELP, check_resume, data_options, shown, with_config_file
from nacvae.train.vae_config import VAEConfig

# The VAE stage holds its dataset in memory: the streamed datasets are not offered.
VAE_DATA_HELP = ("Dataset: digits (bundled), fashion-mnist, cifar10 (under --data-dir) or folder:PATH "
                 "(a folder of images).")


@click.command()
@click.option("--config", "config_file", type=click.Path(), default=None, help=CONFIG_HELP)
@data_options(data_help=VAE_DATA_HELP)
@click.option("--image-size", type=int, default=None,
              help="Side that folder images are resized to [the encoder's, else 32].")
@click.option("--init", type=click.Choice(("random",) + registry.names()),
              default=None,
              help="Encoder start: random, or the newest complete pretraining run of that objective for the "
                   f"same dataset (and --arch, when given) under --runs-root {shown(VAEConfig, 'init')}.")
@click.option("--encoder", type=click.Path(), default=None,
              help="A pretraining checkpoint or run folder to start the encoder from (overrides --init).")
@click.option("--runs-root", type=click.Path(file_okay=False), default=None,
              help="Where --init looks for pretraining runs [$NACVAE_RUNS or ./runs].")
@click.option("--arch", default=None,
              help="Backbone; must match the encoder's [the encoder's; dataset default for random].")
@click.option("--likelihood", type=click.Choice(["logistic", "bernoulli"]), default=None,
              help=f"logistic: discretized logistic over 256 levels; bernoulli: binarised pixels "
                   f"{shown(VAEConfig, 'likelihood')}.")
@click.option("--binarize", type=click.Choice(["threshold", "stochastic"]), default=None,
              help="Binarisation for --likelihood bernoulli: level >= 128, or a fresh draw per step with "
                   f"p = level/255 {shown(VAEConfig, 'binarize')}.")
@click.option("--latent-dim", type=int, default=None, help=f"Size of z {shown(VAEConfig, 'latent_dim')}.")
@click.option("--epochs", type=int, default=None, help=f"Training epochs [{presets.help_values('epochs', presets.VAE)}].")
@click.option("--steps", type=int, default=None, help="Train this many steps instead of --epochs (may end mid-epoch).")
@click.option("--batch-size", type=int, default=None, help=f"Images per step [{presets.help_values('batch_size', presets.VAE)}].")
@click.option("--lr", type=float, default=None, help=f"Adam learning rate {shown(VAEConfig, 'lr')}.")
@click.option("--kl-warmup-epochs", type=int, default=None,
              help="Linear annealing of the KL weight from 0 to 1 over this many epochs (0: weight 1 throughout) "
                   f"{shown(VAEConfig, 'kl_warmup_epochs')}.")
@click.option("--elbo", type=click.Choice(["meanfield", "trace"]), default=None,
              help="meanfield: TraceMeanField_ELBO (analytic KL); trace: Trace_ELBO (sampled KL) "
                   f"{shown(VAEConfig, 'elbo')}.")
@click.option("--freeze-encoder", is_flag=True,
              help="Keep the transferred backbone fixed (eval mode); train heads and decoder.")
@click.option("--seed", type=int, default=None,
              help=f"Random seed; the same seed repeats the run exactly on CPU {shown(VAEConfig, 'seed')}.")
@click.option("--device", default=None, help=f"auto, cpu, cuda or cuda:N {shown(VAEConfig, 'device')}.")
@click.option("--amp/--no-amp", default=None,
              help="bf16 autocast for the backbone and the decoder's hidden layers (the Gaussian heads, the output "
                   "layer and the ELBO stay float32) [$NACVAE_AMP, else auto, as for pretrain: timed on CPUs with "
                   "native bf16]. config.json records the choice; --resume keeps it; log p(x) is always estimated "
                   "in float32.")
@click.option("--eval-samples", type=int, default=None,
              help="If > 0, estimate the test log-likelihood with this many importance samples at the end "
                   f"{shown(VAEConfig, 'eval_samples')}.")
@click.option("--curve-points", type=int, default=None,
              help="Convergence-curve points (test ELBO and log p(x)) at fixed fractions of training; 0: none "
                   f"{shown(VAEConfig, 'curve_points')}.")
@click.option("--curve-samples", type=int, default=None,
              help="Importance samples of each curve point's log p(x); 0: the ELBO only "
                   f"{shown(VAEConfig, 'curve_samples')}.")
@click.option("--curve-images", type=int, default=None,
              help=f"Test images evaluated at each curve point {shown(VAEConfig, 'curve_images')}.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run folder to create (default: a new folder under $NACVAE_RUNS or ./runs).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out with its saved configuration.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def vae(out: str | None, resume: bool, quiet: bool, config_file: str | None, **options) -> None:
    """Train a Pyro VAE whose encoder starts from a pretrained (or random) backbone."""
    from nacvae.errors import ConfigError
    from nacvae.runs import default_runs_root, new_run_name
    from nacvae.train.vae import resolve_vae_config, train_vae
    from nacvae.train.vae_config import describe_encoder_choice

    if resume and out is None:
        raise ConfigError("--resume needs --out, the run folder to continue.")
    if resume and config_file is not None:
        raise ConfigError("--resume continues a run with its saved settings, so --config cannot be given with it.")
    if resume:
        check_resume(out, "vae", options)
    if config_file is not None:
        options = with_config_file(config_file, "vae", options)
    data = options.pop("data")
    cfg = resolve_vae_config(data, **options)
    if out is None:
        tag = "encoder" if cfg.encoder is not None else cfg.init
        out = str(default_runs_root() / new_run_name("vae", data, tag))
    choice = None if resume else describe_encoder_choice(cfg)
    if choice is not None:
        click.echo(choice, err=True)
    run = train_vae(cfg, Path(out), resume=resume, progress=not quiet)
    click.echo(f"Run folder: {run}")


@click.command("loglik")
@click.option("--run", type=click.Path(), default=None, help="A VAE run folder.")
@click.option("--checkpoint", type=click.Path(), default=None, help="A VAE checkpoint.")
@click.option("--samples", type=int, default=1000, show_default=True, help="Importance samples K per image.")
@click.option("--batch-size", type=int, default=100, show_default=True, help="Images per batch.")
@click.option("--chunk-size", type=int, default=None,
              help="Importance samples drawn at once [as many as keep memory bounded].")
@click.option("--num-images", type=int, default=None, help="Evaluate the first N test images [all].")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where datasets live [the run's].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the importance samples.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--quiet", is_flag=True, help="No progress bar (it is drawn only on a terminal, never with --json).")
@click.option("--no-record", is_flag=True, help="Do not append the result to the run's metrics.jsonl.")
def loglik(run, checkpoint, samples, batch_size, chunk_size, num_images, data_dir, seed, device, as_json, quiet,
           no_record) -> None:
    """Importance-weighted test log-likelihood, ELBO, KL and active units of a trained VAE."""
    from nacvae.eval.vae_runs import evaluate_run
    from nacvae.progress import progress_bars

    with progress_bars(not quiet and not as_json):
        r = evaluate_run(run=run, checkpoint=checkpoint, samples=samples, batch_size=batch_size,
                         chunk_size=chunk_size, num_images=num_images, seed=seed, device=device, data_dir=data_dir,
                         record=not no_record)
    r = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
    # A run that could not record the result says so on stderr, after it (exit 0).
    note = r.pop("not_recorded", None)
    if as_json:
        click.echo(json.dumps(r))
        if note is not None:
            click.echo(note, err=True)
        return
    encoder = r["init"] if r["encoder_checkpoint"] is None else f"{r['init']} ({r['encoder_checkpoint']})"
    unfinished = "" if r["complete"] else ", unfinished run"
    click.echo(f"VAE: {r['run'] or r['checkpoint']}, step {r['step']}{unfinished}")
    click.echo(f"  encoder init {encoder}, {r['arch']}, {r['likelihood']} likelihood, {r['latent_dim']}-d latent")
    click.echo(f"Test split of {r['dataset']}: {r['num_images']} images, K = {r['samples']} importance samples")
    click.echo(f"  log-likelihood  {_num(r['loglik_nats'])} nats/image  ({_num(r['bits_per_dim'], 4)} bits/dim)")
    click.echo(f"  ELBO            {_num(r['elbo'])} nats/image")
    click.echo(f"  KL              {_num(r['kl'])} nats/image")
    click.echo(f"  active units    {r['active_units']} of {r['latent_dim']}")
    if note is not None:
        click.echo(note, err=True)


def _num(v, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"
