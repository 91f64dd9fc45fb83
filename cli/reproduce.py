"""``nacvae reproduce``: the paper's comparison, end to end, at a chosen scale."""

from __future__ import annotations

import json

import click

from nacvae.studies.presets import ALL_INITS, INITS, RETRIEVAL_NAC, TAUGHT, TEACHER_INIT


@click.command()
@click.option("--preset", default="digits", show_default=True,
              help="Scale: digits (about 3 minutes on 2 CPU cores), fashion-mnist-cpu (about an hour of CPU time a seed), "
                   "fashion-mnist-cpu-baselines (the same with InsDis, DeepBit, SSDH and DistillHash), "
                   "cifar10-paper (GPU); fashion-mnist-vae: the VAE study (every encoder and a random one, backbone "
                   "fine-tuned and frozen: convergence curves, log p(x), KL, inference gaps; about 20-25 minutes a "
                   "seed on one busy CPU core with --encoders-from, plus three 1,400-step pretrainings without).")
@click.option("--seeds", type=int, default=1, show_default=True, help="Repeat everything with seeds 0..N-1; report mean ± std.")
@click.option("--seed", "only_seeds", type=int, multiple=True,
              help="Run only this seed (repeatable), e.g. one seed per process in one study folder; the tables "
                   "cover every seed the folder holds.")
@click.option("--methods", default=None,
              help=f"Encoders to train and evaluate, comma-separated, from {', '.join(ALL_INITS)} "
                   f"({', '.join(TAUGHT)} add {TEACHER_INIT}, their teacher) [the preset's: "
                   f"{', '.join(INITS + (RETRIEVAL_NAC,))}].")
@click.option("--recipe", type=click.Choice(["own", "shared"]), default="own", show_default=True,
              help="Encoder studies: each method's own recipe, or NAC's for every method (the ablation); with its "
                   "own recipe a method of another batch size trains the same number of epochs.")
@click.option("--no-vae", "no_vae", is_flag=True,
              help="Encoder studies: evaluate the encoders and train no VAE.")
@click.option("--jobs", default="auto", show_default=True, metavar="N|auto",
              help="Encoder studies: worker processes that run a seed's independent stages side by side "
                   "(pretrainings, evaluations, VAEs), sharing the --threads; auto: on a CPU one per thread, at "
                   "most one per encoder (on 2 cores: 2 jobs of 1 thread, exactly the numbers of --jobs 1 "
                   "--threads 1), on a GPU 1.")
@click.option("--flip-prob", type=float, default=None, help="NAC's channel flip probability [preset default].")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where the dataset lives.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Study folder to create (default: a new folder under $NACVAE_RUNS or ./runs).")
@click.option("--resume", is_flag=True,
              help="Continue the study in --out: finished seeds and stages are kept, interrupted runs continue, "
                   "seeds up to --seeds are added.")
@click.option("--encoders-from", type=click.Path(file_okay=False), default=None,
              help="VAE study: take the NAC, SimCLR and MoCo-v2 encoders from this study folder's "
                   "seed-N/pretrain-* runs (checked to match the preset's pretraining) instead of training them.")
@click.option("--likelihood", type=click.Choice(["logistic", "bernoulli"]), default=None,
              help="VAE study: the VAEs' likelihood [preset: logistic].")
@click.option("--latent-dim", type=int, default=None, help="VAE study: the VAEs' latent size [preset: 32].")
@click.option("--vae-steps", type=int, default=None, help="VAE study: the VAEs' training steps [preset: 150].")
@click.option("--json", "as_json", is_flag=True, help="Print the aggregated results as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def reproduce(preset: str, seeds: int, only_seeds: tuple[int, ...], flip_prob: float | None, data_dir: str | None, device: str, out: str | None,
              resume: bool, as_json: bool, quiet: bool, methods: str | None = None,
              encoders_from: str | None = None, likelihood: str | None = None, latent_dim: int | None = None,
              vae_steps: int | None = None, recipe: str = "own", no_vae: bool = False, jobs: str = "auto") -> None:
    """Pretrain NAC, SimCLR and MoCo-v2 for the same number of steps (and NAC again at the
    preset's retrieval p), evaluate them and a random encoder (linear probe, retrieval, code
    statistics), train a VAE from each and estimate its log-likelihood; write results.md,
    results.json and figures/ into the study folder, rebuilt after every seed. --methods adds
    the paper's other baselines (InsDis, DeepBit, SSDH, DistillHash; same steps, no VAE). The
    VAE study preset trains two VAEs per encoder (backbone fine-tuned and frozen) and measures
    their convergence and inference gaps instead of the encoder evaluations."""
    from nacvae.errors import ConfigError
    from nacvae.runs import default_runs_root, new_run_name
    from nacvae.studies import PRESETS, VAE_PRESETS, run_study, run_vae_study
    from nacvae.studies.stages import parse_jobs

    if resume and out is None:
        raise ConfigError("--resume needs --out, the study folder to continue.")
    if out is None:
        out = str(default_runs_root() / new_run_name("study", preset, f"{seeds}seeds"))
    log = (lambda msg: None) if as_json else (lambda msg: click.echo(msg, err=True))
    if preset not in PRESETS and preset not in VAE_PRESETS:
        raise ConfigError(f"Unknown preset '{preset}'; choose one of {', '.join([*PRESETS, *VAE_PRESETS])}.")
    options = dict(seeds=seeds, data_dir=data_dir, device=device, progress=not quiet, log=log, flip_prob=flip_prob,
                   resume=resume, only_seeds=list(only_seeds) or None)
    if preset in VAE_PRESETS:
        if jobs != "auto":
            raise ConfigError(f"--jobs belongs to the encoder studies, not to the {preset} preset.")
        if recipe != "own" or no_vae:
            raise ConfigError(f"--{'recipe' if recipe != 'own' else 'no-vae'} belongs to the encoder studies, "
                              f"not to the {preset} preset.")
        if methods is not None:
            raise ConfigError(f"--methods chooses the encoders of the encoder studies; the {preset} preset always "
                              "trains NAC, SimCLR and MoCo-v2.")
        results = run_vae_study(preset, out, **options, encoders_from=encoders_from,
                                vae_options=dict(likelihood=likelihood, latent_dim=latent_dim, steps=vae_steps))
    else:
        given = [flag for flag, value in (("--encoders-from", encoders_from), ("--likelihood", likelihood),
                                          ("--latent-dim", latent_dim), ("--vae-steps", vae_steps))
                 if value is not None]
        if given:
            raise ConfigError(f"{given[0]} belongs to the VAE study (--preset {', '.join(VAE_PRESETS)}), "
                              f"not to the {preset} preset.")
        results = run_study(preset, out, **options, recipe=recipe, vaes=not no_vae, jobs=parse_jobs(jobs),
                            methods=None if methods is None else [m.strip() for m in methods.split(",") if m.strip()])
    if as_json:
        click.echo(json.dumps({k: v for k, v in results.items() if k != "rows"}, indent=2))
    else:
        from pathlib import Path

        click.echo((Path(out) / "results.md").read_text())
        click.echo(f"Study folder: {out} ({results['seconds'] / 60:.1f} min)")
