"""The VAE loop on the bundled digits: encoder transfer, run folder, exact resume, failures."""

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from tests.interrupt import kill_mid_run

from nacvae.checkpoint import backbone_state_dict, load_checkpoint
from nacvae.errors import CheckpointError, ConfigError, TrainingError
from nacvae.eval.vae_runs import evaluate_run, load_vae
from nacvae.runs import CHECKPOINT, read_config, read_metrics
from nacvae.train.config import resolve_config
from nacvae.train.pretrain import pretrain
from nacvae.train.vae import build_vae, resolve_encoder_init, resolve_vae_config, train_vae

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(epochs=2, batch_size=256, latent_dim=8)  # 1438 // 256 = 5 steps per epoch
SHAPE = (1, 8, 8)


def _edit_config(run, **values):
    path = run / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """Two complete NAC runs (finish times set to order them) and two newer decoys."""
    root = tmp_path_factory.mktemp("runs")
    for name, seed, when in (("old", 0, "2030-01-01T00:00:00"), ("new", 1, "2030-01-02T00:00:00")):
        cfg = resolve_config("digits", epochs=1, batch_size=512, code_dim=8, seed=seed)
        pretrain(cfg, root / name, progress=False)
        _edit_config(root / name, finished_at=when)
    for name, values in (("simclr", dict(objective="simclr")), ("unfinished", dict(status="running"))):
        shutil.copytree(root / "old", root / name)
        _edit_config(root / name, finished_at="2031-01-01T00:00:00", **values)
    return root


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    cfg = resolve_vae_config("digits", init="random", eval_samples=10, log_every=2, **TINY)
    return train_vae(cfg, tmp_path_factory.mktemp("vae") / "run", progress=False)


def test_init_nac_copies_the_backbone_of_the_newest_complete_run(runs_root, tmp_path):
    cfg = resolve_vae_config("digits", init="nac", runs_root=str(runs_root), **TINY)
    backbone, feature_dim, source = resolve_encoder_init(cfg, SHAPE)
    assert source["run"] == str(runs_root / "new") and source["objective"] == "nac" and feature_dim == 256
    saved = backbone_state_dict(load_checkpoint(runs_root / "new" / CHECKPOINT))
    older = backbone_state_dict(load_checkpoint(runs_root / "old" / CHECKPOINT))
    state = backbone.state_dict()
    assert set(state) == set(saved)
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    assert not all(torch.equal(saved[k], older[k]) for k in saved)

    # Heads and decoder are fresh, and the same for every init with the same seed.
    random_backbone, _, _ = resolve_encoder_init(resolve_vae_config("digits", **TINY), SHAPE)
    a = build_vae(cfg, backbone, feature_dim, SHAPE, (0.3,), (0.4,)).state_dict()
    b = build_vae(cfg, random_backbone, feature_dim, SHAPE, (0.3,), (0.4,)).state_dict()
    heads = [k for k in a if not k.startswith("encoder.backbone.")]
    assert "encoder.loc.weight" in heads and "decoder.fc.weight" in heads
    assert all(torch.equal(a[k], b[k]) for k in heads)

    # A frozen encoder still holds exactly the transferred weights after training.
    frozen = dataclasses.replace(cfg, freeze_encoder=True, epochs=1, test_every=0, image_every=0)
    run = train_vae(frozen, tmp_path / "frozen", progress=False)
    config = read_config(run)
    assert config["freeze_encoder"] is True and config["vae"]["freeze_encoder"] is True
    assert config["init"] == "nac" and config["encoder"]["checkpoint"] == str(runs_root / "new" / CHECKPOINT)
    assert config["encoder"]["step"] == load_checkpoint(runs_root / "new" / CHECKPOINT)["step"]
    model = load_checkpoint(run / CHECKPOINT, kind="vae")["model"]
    assert all(torch.equal(model["encoder.backbone." + k], saved[k]) for k in saved)


def test_encoder_mismatches_are_reported(runs_root):
    with pytest.raises(ConfigError, match="nac pretraining run for digits with arch resnet18 under .*: "
                       r"nac/digits/smallconv x2, nac/digits/smallconv \(running\), simclr/digits/smallconv\."):
        resolve_encoder_init(resolve_vae_config("digits", init="nac", arch="resnet18", runs_root=str(runs_root)))
    with pytest.raises(ConfigError, match="pretraining runs there are: none"):
        resolve_encoder_init(resolve_vae_config("digits", init="moco", runs_root=str(runs_root / "nothing")))
    with pytest.raises(ConfigError, match="pretrained on 1x8x8 images"):
        resolve_encoder_init(resolve_vae_config("digits", encoder=str(runs_root / "old")), (3, 32, 32))
    with pytest.raises(ConfigError, match="is a smallconv backbone, but --arch resnet18"):
        resolve_encoder_init(resolve_vae_config("digits", encoder=str(runs_root / "old"), arch="resnet18"))


def test_run_folder_is_complete_and_self_describing(vae_run):
    config = read_config(vae_run)
    assert config["kind"] == "vae" and config["status"] == "complete" and config["init"] == "random"
    assert config["dataset"] == "digits" and config["arch"] == "smallconv" and config["likelihood"] == "logistic"
    assert config["latent_dim"] == 8 and config["vae"]["epochs"] == 2 and config["encoder"]["checkpoint"] is None
    ckpt = load_checkpoint(vae_run / CHECKPOINT, kind="vae")
    assert ckpt["complete"] and ckpt["step"] == config["total_steps"] == 10
    for key, value in dict(arch="smallconv", dataset="digits", image_shape=[1, 8, 8], likelihood="logistic",
                           latent_dim=8, feature_dim=256, init="random").items():
        assert ckpt["meta"][key] == value, key
    metrics = read_metrics(vae_run)
    train = [r for r in metrics if r["event"] == "train"]
    assert [r["step"] for r in train] == [2, 4, 5, 6, 8, 10]
    assert {"loss", "elbo", "kl", "reconstruction", "kl_weight", "lr", "images_per_s"} <= set(train[0])
    assert all(math.isclose(r["elbo"], r["reconstruction"] - r["kl"], abs_tol=1e-6) for r in train)
    assert [r["step"] for r in metrics if r["event"] == "test"] == [5, 10]
    (final,) = [r for r in metrics if r["event"] == "eval_loglik"]
    assert final["samples"] == 10 and final["num_images"] == 359

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(vae_run / "tb"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"images/prior_samples", "images/reconstructions"} <= set(tags["images"])
    assert {"train/elbo", "train/kl", "train/reconstruction", "train/kl_weight", "train/lr", "test/elbo"} <= set(
        tags["scalars"])
    assert [e.step for e in events.Images("images/reconstructions")] == [5, 10]


def test_load_and_evaluate(vae_run):
    vae, meta = load_vae(vae_run)
    assert not vae.training and meta["latent_dim"] == 8 and meta["run"] == str(vae_run)
    before = len(read_metrics(vae_run))
    a = evaluate_run(run=vae_run, samples=50, num_images=24, seed=3)
    b = evaluate_run(checkpoint=vae_run / CHECKPOINT, samples=50, num_images=24, seed=3)
    assert a["loglik_nats"] == b["loglik_nats"]  # seeded
    assert len(read_metrics(vae_run)) == before + 1  # only the run folder records
    assert a["num_images"] == 24 and a["samples"] == 50 and a["init"] == "random" and a["dataset"] == "digits"
    assert a["bits_per_dim"] == pytest.approx(-a["loglik_nats"] / (64 * math.log(2)))
    # The importance-weighted bound lies above the ELBO (here: a one-sample estimate of it).
    assert a["loglik_nats"] >= a["elbo"] - 0.5
    assert 0 <= a["active_units"] <= 8 and a["kl"] >= 0
    with pytest.raises(ConfigError, match="--samples"):
        evaluate_run(run=vae_run, samples=0)
    with pytest.raises(ConfigError, match="--num-images 400"):
        evaluate_run(run=vae_run, samples=1, num_images=400)


def _train_command(out):
    code = (
        "import sys; from nacvae.train.vae import resolve_vae_config, train_vae;"
        "cfg = resolve_vae_config('digits', epochs=2, batch_size=128, latent_dim=8, likelihood='bernoulli',"
        " binarize='stochastic', elbo='trace', kl_warmup_epochs=1, checkpoint_every=1, log_every=1,"
        " image_every=0, test_every=1, device='cpu');"
        "train_vae(cfg, sys.argv[1], resume=sys.argv[2] == '1', progress=False)"
    )
    return [sys.executable, "-c", code, str(out)]


def test_killed_run_resumes_to_identical_weights(tmp_path):
    """A run killed mid-way and resumed ends with the weights of one never interrupted."""
    total = 2 * (1438 // 128)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_train_command(tmp_path / "whole") + ["0"], check=True, env=env)

    killed = tmp_path / "killed"
    interrupted_at = kill_mid_run(_train_command(killed) + ["0"], killed, env)
    assert 0 < interrupted_at < total, "the run should have been killed mid-way"
    assert read_config(killed)["status"] == "running"

    subprocess.run(_train_command(killed) + ["1"], check=True, env=env)
    whole = load_checkpoint(tmp_path / "whole" / CHECKPOINT)
    resumed = load_checkpoint(killed / CHECKPOINT)
    assert resumed["step"] == whole["step"] == total and resumed["complete"]
    for key, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for event in ("train", "test", "curve"):
        a = [r for r in read_metrics(tmp_path / "whole") if r["event"] == event]
        b = [r for r in read_metrics(killed) if r["event"] == event]
        assert [r["step"] for r in a] == [r["step"] for r in b]
        assert [r["elbo"] for r in a] == [r["elbo"] for r in b]
    assert read_config(killed)["status"] == "complete"


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from nacvae.train import vae as vae_module

    calls = {"n": 0}
    real = vae_module._loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss, rec, kl = real(*args, **kwargs)
        return (loss * float("nan") if calls["n"] > 7 else loss), rec, kl

    monkeypatch.setattr(vae_module, "_loss", poisoned)
    cfg = resolve_vae_config("digits", **TINY)
    with pytest.raises(TrainingError, match=r"non-finite before step 10; the last good checkpoint \(step 5\)"):
        train_vae(cfg, tmp_path / "run", progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert ckpt["step"] == 5 and not ckpt["complete"]
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert read_config(tmp_path / "run")["status"] == "failed"


@pytest.mark.parametrize("values,fragment", [
    (dict(init="byol"), "Unknown --init 'byol'"),
    (dict(likelihood="gaussian"), "Unknown --likelihood"),
    (dict(elbo="renyi"), "Unknown --elbo"),
    (dict(latent_dim=0), "--latent-dim must be at least 1"),
    (dict(batch_size=1), "--batch-size must be at least 2"),
    (dict(lr=-1.0), "--lr must be a finite number above 0"),
    (dict(kl_warmup_epochs=-1), "--kl-warmup-epochs"),
    (dict(arch="resnet7"), "Unknown architecture 'resnet7'"),
])
def test_bad_configurations(values, fragment):
    with pytest.raises(ConfigError, match=fragment):
        resolve_vae_config("digits", **values)


def test_folders_that_cannot_be_used(tmp_path, runs_root):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(ConfigError, match="already used"):
        train_vae(resolve_vae_config("digits", **TINY), tmp_path / "used", progress=False)
    with pytest.raises(ConfigError, match="is a pretrain run, not a VAE run"):
        train_vae(resolve_vae_config("digits", **TINY), runs_root / "old", resume=True, progress=False)
    with pytest.raises(CheckpointError, match="is a pretrain run, not a VAE run"):
        load_vae(runs_root / "old")
