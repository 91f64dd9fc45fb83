"""Training a Pyro VAE whose encoder starts from a pretrained (or random) backbone.

data -> q(z|x) (transferred backbone + fresh Gaussian heads) -> decoder p(x|z) -> ELBO.

The encoder comes from ``--init random`` (a seeded, untrained backbone), from the newest
complete pretraining run of the chosen objective under the runs root, or from an explicit
``--encoder`` checkpoint / run folder. Only the backbone's weights are copied; the heads
mu, sigma and the decoder are fresh and, for a given seed, initialised identically
whatever the backbone, so runs that differ only in ``init`` start from the same heads.

Every random draw is a function of (seed, step): the epoch's shuffle is seeded by
(seed, epoch), and the step's reparameterisation noise (Pyro's global RNG) and
stochastic binarisation by (seed, step). A run resumed from its last checkpoint
therefore ends with the weights of one never interrupted (exactly, on CPU).
"""

from __future__ import annotations

import copy
import dataclasses
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import torch

from nacvae import __version__
from nacvae.checkpoint import load_checkpoint, restore_training_state
from nacvae.data import channel_stats, load_dataset
from nacvae.devices import resolve_device
from nacvae.errors import CheckpointError, ConfigError
from nacvae.eval.vae_runs import evaluate_run
from nacvae.models.backbones import build_backbone
from nacvae.models.vae import VAE, analytic_kl
from nacvae.models.vae_inputs import observed_test_images, vae_observations
from nacvae.presets import FOLDER_PREFIX
from nacvae.runs import (
    CHECKPOINT, append_metrics, check_run_dir, hold_run, read_config, read_run_config, starts_afresh,
    truncate_metrics, write_config
)
from nacvae.seeds import PICTURES_STREAM, TEST_STREAM, step_seed
from nacvae.train.elbo import negative_elbo
from nacvae.train.loop import EpochOrder, RunCheckpoint, RunState, Window, events_and_bar, is_log_step, steps
from nacvae.train.pictures import image_grid
from nacvae.precision import Decision, resolve_amp
from nacvae.train.vae_config import (
    INITS, VAEConfig, check_encoder_shape, resolve_encoder_init, resolve_vae_config, saved_vae_config,
    validate_vae_config
)
from nacvae.train.vae_curves import curve_point, curve_steps

__all__ = [
    "VAEConfig", "INITS", "resolve_vae_config", "validate_vae_config", "resolve_encoder_init",
    "build_vae", "train_vae",
]

RECON_IMAGES = 32   # test images shown with their reconstructions in TensorBoard
PRIOR_IMAGES = 64   # prior samples shown in TensorBoard


def build_vae(cfg: VAEConfig, backbone, feature_dim: int, image_shape, mean, std) -> VAE:
    """The VAE around ``backbone``; the fresh heads and decoder are initialised from ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    return VAE(backbone, feature_dim, image_shape, latent_dim=cfg.latent_dim, likelihood=cfg.likelihood,
               mean=mean, std=std, freeze_encoder=cfg.freeze_encoder, decoder_width=cfg.decoder_width)


# ------------------------------------------------------------------------------- data


@dataclass
class VAEData:
    train: torch.Tensor  # uint8 [N, C, H, W] on the training device
    test: torch.Tensor   # uint8 [M, C, H, W]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_shape: tuple[int, int, int]


def _image_size(cfg: VAEConfig, encoder_shape) -> int | None:
    if cfg.image_size is not None:
        return cfg.image_size
    if cfg.data.startswith(FOLDER_PREFIX) and encoder_shape is not None:
        return int(encoder_shape[-1])
    return None


def load_vae_data(cfg: VAEConfig, device: torch.device, image_size: int | None) -> VAEData:
    train = load_dataset(cfg.data, "train", cfg.data_dir, download=cfg.download, image_size=image_size)
    test = load_dataset(cfg.data, "test", cfg.data_dir, download=cfg.download, image_size=image_size)
    mean, std = channel_stats(cfg.data, train)
    if len(train) < cfg.batch_size:
        raise ConfigError(f"--batch-size {cfg.batch_size} is larger than the {len(train)} training images.")
    if len(test) < 1:
        raise ConfigError(f"The {cfg.data} test split is empty.")
    return VAEData(train.images.to(device), test.images.to(device), tuple(mean), tuple(std), train.image_shape)


# -------------------------------------------------------------------------- training


def seed_global_rng(seed: int, device: torch.device) -> None:
    """Seed the global torch generators the guide draws from, as ``pyro.set_rng_seed`` does
    for them (the step draws nothing from Python's or NumPy's): ``torch.manual_seed`` also
    visits every other device backend, 0.15 ms a call against 1 us here."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(seed)


def _kl_weight(step: int, warmup_steps: int) -> float:
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


def _loss(vae: VAE, elbo: str, x: torch.Tensor, kl_weight: float):
    """(loss per image, reconstruction sum, KL sum); the last two are detached, beta = 1.

    ``elbo`` is the estimator ("meanfield" or "trace"); the loss equals Pyro's
    TraceMeanField_ELBO / Trace_ELBO loss for vae.model and vae.guide (nacvae.train.elbo).
    """
    return negative_elbo(vae, x, kl_weight, elbo)


@torch.no_grad()
def _test_elbo(vae: VAE, test_x: torch.Tensor, seed: int, batch_size: int = 500) -> dict[str, float]:
    """Single-sample ELBO on the test split with the VAE in eval mode (own generator: the
    training RNG streams are untouched)."""
    gen = torch.Generator(device=test_x.device).manual_seed(seed)
    was = vae.training
    vae.eval()
    rec = kl = 0.0
    try:
        for x in test_x.split(batch_size):
            mu, sigma = vae.encode(x)
            z = mu + sigma * torch.randn(mu.shape, generator=gen, device=mu.device, dtype=mu.dtype)
            rec += vae.likelihood_dist(z).log_prob(x).double().sum().item()
            kl += analytic_kl(mu, sigma).double().sum().item()
    finally:
        vae.train(was)
    n = test_x.shape[0]
    return {"elbo": (rec - kl) / n, "kl": kl / n, "reconstruction": rec / n}


@torch.no_grad()
def _pictures(vae: VAE, shown: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(prior samples, originals and reconstructions in alternating rows of 8), floats in [0, 1]."""
    was = vae.training
    vae.eval()
    try:
        gen = torch.Generator(device=shown.device).manual_seed(seed)
        samples = vae.sample_images(PRIOR_IMAGES, generator=gen)
        recon = vae.reconstruct(shown)
    finally:
        vae.train(was)
    orig = (shown * (255.0 if vae.likelihood == "bernoulli" else 1.0)).round().to(torch.uint8)
    rows = []
    for start in range(0, shown.shape[0], 8):
        rows += [orig[start:start + 8], recon[start:start + 8]]
    return samples.float() / 255.0, torch.cat(rows).float() / 255.0


def checkpoint_meta(cfg: VAEConfig, data: VAEData, feature_dim: int, source: dict[str, Any], arch: str):
    return dict(arch=arch, dataset=cfg.data, image_shape=list(data.image_shape), likelihood=cfg.likelihood,
                binarize=cfg.binarize, latent_dim=cfg.latent_dim, feature_dim=int(feature_dim),
                decoder_width=cfg.decoder_width, freeze_encoder=cfg.freeze_encoder, init=source["init"],
                encoder_objective=source["objective"], encoder_checkpoint=source["checkpoint"],
                encoder_step=source["step"], mean=list(data.mean), std=list(data.std),
                nacvae_version=__version__)


def train_vae(cfg: VAEConfig, out: str | Path, resume: bool = False, progress: bool = True) -> Path:
    """Train a VAE as ``cfg`` says, writing the run folder ``out``; returns its path.

    With ``resume`` the configuration saved in ``out`` is used and training continues from
    its last checkpoint (the encoder is not looked up again). Pyro's global param store is
    left as it was: training runs in a private scope of it. The folder is locked while the
    run trains (``nacvae.runs.hold_run``).
    """
    out = Path(out)
    check_run_dir(out, resume)
    afresh = resume and starts_afresh(out)
    with hold_run(out, resume, afresh=afresh):
        return _prepare(cfg, out, resume, afresh, progress)


def _prepare(cfg: VAEConfig, out: Path, resume: bool, afresh: bool, progress: bool) -> Path:
    """``afresh``: a resumed run without a checkpoint, trained from step 0 with its saved
    configuration, its encoder looked up again as when it was first started."""
    saved = None
    if resume:
        saved = read_run_config(out, "vae", resuming=True)
        if not isinstance(saved.get("encoder"), dict) or not isinstance(saved.get("arch"), str):
            raise CheckpointError(f"{out / 'config.json'} is damaged: it does not describe the run's encoder.")
        cfg = saved_vae_config(out, saved["vae"])
        if afresh:
            saved, resume = None, False
    validate_vae_config(cfg)
    device = resolve_device(cfg.device)

    if saved is not None:
        source = saved["encoder"]
        data = load_vae_data(cfg, device, _image_size(cfg, source.get("image_shape")))
        arch = saved["arch"]
        backbone, feature_dim = build_backbone(arch, data.image_shape[0], data.image_shape[1])
    elif cfg.encoder is None and cfg.init == "random":
        data = load_vae_data(cfg, device, _image_size(cfg, None))
        backbone, feature_dim, source = resolve_encoder_init(cfg, data.image_shape)
    else:
        backbone, feature_dim, source = resolve_encoder_init(cfg)
        data = load_vae_data(cfg, device, _image_size(cfg, source["image_shape"]))
        check_encoder_shape(source["checkpoint"], source["image_shape"], data.image_shape, cfg.data)
    arch = source["arch"]
    cfg = dataclasses.replace(cfg, arch=arch)

    with pyro.get_param_store().scope():
        return _train(cfg, out, resume, progress, device, data, backbone, feature_dim, source, arch)


@dataclass(kw_only=True)
class _Run(RunState):
    """A VAE run ready to step: besides what every run has (its KL warm-up as ``warmup_steps``),
    the model, the test images its records use and the steps of its convergence curve."""

    cfg: VAEConfig
    vae: VAE
    test_x: torch.Tensor
    curve_at: dict[int, float]


def _open_run(cfg: VAEConfig, out: Path, resume: bool, device: torch.device, data: VAEData, backbone,
              feature_dim: int, source: dict[str, Any], arch: str) -> _Run:
    vae = build_vae(cfg, backbone, feature_dim, data.image_shape, data.mean, data.std).to(device)
    # The loss is Pyro's ELBO for vae.model / vae.guide, computed from the model's own terms
    # (nacvae.train.elbo) and minimised with a plain torch optimiser over the module's
    # parameters (rather than SVI with pyro.optim): the optimiser's state dict makes resuming
    # exact, and the same step would take data-parallel gradient averaging or autocast.
    params = [p for p in vae.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    amp, amp_why = _choose_precision(cfg, out, resume, device, vae, data)
    vae.set_precision(torch.bfloat16 if amp else None)
    steps_per_epoch = data.train.shape[0] // cfg.batch_size  # the last incomplete batch is dropped
    total_steps = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch
    ckpt_path = out / CHECKPOINT
    start_step = 0
    if resume:
        ckpt = load_checkpoint(ckpt_path, kind="vae", expect={"arch": arch, "likelihood": cfg.likelihood,
                                                              "latent_dim": cfg.latent_dim})
        start_step = restore_training_state(ckpt_path, ckpt, vae, optimizer)
        del ckpt
    test_x = observed_test_images(data.test.cpu(), cfg.likelihood, cfg.binarize, cfg.seed).to(device)
    run_config = {
        "kind": "vae", "status": "running", "init": source["init"], "encoder": source, "dataset": cfg.data,
        "arch": arch, "likelihood": cfg.likelihood, "latent_dim": cfg.latent_dim,
        "freeze_encoder": cfg.freeze_encoder, "image_shape": list(data.image_shape), "feature_dim": int(feature_dim),
        "mean": list(data.mean), "std": list(data.std), "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps, "device": str(device), "amp": amp, "amp_decided_by": amp_why,
        "nacvae_version": __version__, "vae": cfg.to_dict(),
    }
    if resume:
        for event in ("train", "test", "curve"):
            truncate_metrics(out, event, start_step)
    write_config(out, run_config)
    checkpoint = RunCheckpoint(ckpt_path, "vae", checkpoint_meta(cfg, data, feature_dim, source, arch), cfg.to_dict(),
                               vae, saved_step=start_step if resume else None, optimizer=optimizer)
    return _Run(out, optimizer, steps_per_epoch, total_steps, cfg.kl_warmup_epochs * steps_per_epoch, start_step,
                cfg.checkpoint_every or steps_per_epoch, checkpoint, run_config,
                cfg=cfg, vae=vae, test_x=test_x, curve_at=curve_steps(total_steps, cfg.curve_points))


def _choose_precision(cfg: VAEConfig, out: Path, resume: bool, device: torch.device, vae: VAE,
                      data: VAEData) -> Decision:
    """bf16 or float32 for the VAE's networks (nacvae/precision.py), timed on a copy of the
    VAE and one training batch, as for pretraining."""
    def probe():
        gen = torch.Generator(device=device).manual_seed(0) if cfg.binarize == "stochastic" else None
        x = vae_observations(data.train[: cfg.batch_size], cfg.likelihood, cfg.binarize, gen)
        return vae_step_probe(vae, x, cfg.elbo)

    return resolve_amp(device, cfg.amp, probe, resumed=read_config(out) if resume else None)


def vae_step_probe(vae: VAE, x: torch.Tensor, elbo: str = "meanfield"):
    """``step(amp)``: one loss and gradient of a copy of ``vae`` on the batch ``x``, in bf16
    or float32; the run's model and random streams are left as they are."""
    twin = copy.deepcopy(vae).train()
    params = [p for p in twin.parameters() if p.requires_grad]

    def step(amp: bool) -> None:
        twin.set_precision(torch.bfloat16 if amp else None)
        with torch.random.fork_rng(devices=[]), pyro.validation_enabled(False):
            loss, _, _ = negative_elbo(twin, x, 1.0, elbo)
            torch.autograd.grad(loss, params)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    return step


def _train(cfg: VAEConfig, out: Path, resume: bool, progress: bool, device: torch.device, data: VAEData,
           backbone, feature_dim: int, source: dict[str, Any], arch: str) -> Path:
    run = _open_run(cfg, out, resume, device, data, backbone, feature_dim, source, arch)
    vae, spe = run.vae, run.steps_per_epoch
    order = EpochOrder(data.train.shape[0], cfg.seed, device, spe, cfg.batch_size)
    window = Window(3, device, torch.float64)  # loss, reconstruction, KL (per image)
    try:
        # Distribution argument checks are off in the loop: a diverged network then shows
        # up as a non-finite loss at the next log step instead of an exception mid-step.
        with events_and_bar(out, run.total_steps, run.start_step, resume, bar=progress) as (writer, bar), \
                pyro.validation_enabled(False), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Encountered NaN")
            vae.train()
            for step in steps(run.start_step, run.total_steps):
                idx = order.rows(step)
                seed = step_seed(cfg.seed, step)
                seed_global_rng(seed % 2**32, device)  # the guide's reparameterisation noise
                gen = torch.Generator(device=device).manual_seed(seed) if cfg.binarize == "stochastic" else None
                x = vae_observations(data.train[idx], cfg.likelihood, cfg.binarize, gen)
                kl_weight = _kl_weight(step, run.warmup_steps)
                loss, rec, kl = _loss(vae, cfg.elbo, x, kl_weight)
                run.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                run.optimizer.step()
                b = x.shape[0]
                window.add(torch.stack([loss.detach().double(), rec.double() / b, kl.double() / b]), loss.detach())
                done = step + 1
                end_of_epoch = done % spe == 0
                if is_log_step(done, run.total_steps, cfg.log_every, run.checkpoint_every) or end_of_epoch:
                    _log(run, window, done, kl_weight, writer, bar)
                # Evaluations and saves are timed out of the window's images per second.
                started = time.perf_counter()
                if end_of_epoch or done == run.total_steps:  # --steps may end a run mid-epoch
                    _epoch_end(cfg, vae, writer, out, done, done // spe if end_of_epoch else done / spe,
                               run.test_x, run.test_x[:RECON_IMAGES], done == run.total_steps)
                if done in run.curve_at:
                    _curve_record(cfg, vae, writer, out, done, run.curve_at[done], run.test_x[:cfg.curve_images])
                if done < run.total_steps and _save_due(cfg, run, done, end_of_epoch):
                    run.checkpoint.save(done)
                window.exclude(time.perf_counter() - started)
                bar.update(1)
        run.checkpoint.save(run.total_steps, complete=True)
    except BaseException as exc:
        run.run_config["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        write_config(out, run.run_config)
        raise
    run.run_config.update(status="complete", finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
    write_config(out, run.run_config)
    if cfg.eval_samples > 0:
        evaluate_run(run=out, samples=cfg.eval_samples, seed=cfg.seed, device=str(device))
    return out


def _save_due(cfg: VAEConfig, run: _Run, done: int, end_of_epoch: bool) -> bool:
    """--checkpoint-every N: every N steps; 0 (the default): at an epoch's end, as often as
    keeps the saves under 2 % of the run's time (a small VAE's epoch can be shorter than its
    checkpoint's write)."""
    if cfg.checkpoint_every:
        return done % cfg.checkpoint_every == 0
    return end_of_epoch and run.checkpoint.affordable()


def _log(run: _Run, window: Window, done: int, kl_weight: float, writer, bar) -> None:
    if not bool(window.finite):
        raise run.checkpoint.non_finite(done, "no checkpoint had been written yet")
    loss_m, rec_m, kl_m = (window.sums / window.steps).tolist()
    record = {
        "event": "train", "step": done, "epoch": done / run.steps_per_epoch, "loss": loss_m,
        "elbo": rec_m - kl_m, "reconstruction": rec_m, "kl": kl_m, "kl_weight": kl_weight,
        "lr": run.optimizer.param_groups[0]["lr"], "images_per_s": window.images_per_s(run.cfg.batch_size),
    }
    for key, value in record.items():
        if key not in ("event", "step"):
            writer.add_scalar(f"train/{key}", value, done)
    append_metrics(run.out, record)
    bar.logged(done, loss=f"{loss_m:.2f}", elbo=f"{record['elbo']:.2f}", kl=f"{kl_m:.2f}",
               img_s=f"{record['images_per_s']:.0f}")
    window.reset()


def _epoch_end(cfg: VAEConfig, vae: VAE, writer, out: Path, step: int, epoch: int, test_x: torch.Tensor,
               shown: torch.Tensor, last: bool) -> None:
    if cfg.test_every and (epoch % cfg.test_every == 0 or last):
        result = _test_elbo(vae, test_x, step_seed(cfg.seed, 0, stream=TEST_STREAM))
        for key, value in result.items():
            writer.add_scalar(f"test/{key}", value, step)
        append_metrics(out, {"event": "test", "step": step, "epoch": epoch, **result})
    if cfg.image_every and (epoch % cfg.image_every == 0 or last):
        samples, recon = _pictures(vae, shown, step_seed(cfg.seed, 0, stream=PICTURES_STREAM))
        writer.add_image("images/prior_samples", image_grid(samples), step)
        writer.add_image("images/reconstructions", image_grid(recon), step)


def _curve_record(cfg: VAEConfig, vae: VAE, writer, out: Path, step: int, fraction: float,
                  curve_x: torch.Tensor) -> None:
    point = curve_point(vae, curve_x, cfg.curve_samples, step_seed(cfg.seed, 0, stream=TEST_STREAM))
    for key, value in point.items():
        writer.add_scalar(f"curve/{key}", value, step)
    append_metrics(out, {"event": "curve", "step": step, "fraction": fraction, "num_images": curve_x.shape[0],
                         "samples": cfg.curve_samples, **point})
