"""Pins what a short digits run of every objective computes, step by step.

The golden values in ``trajectories.json`` were written by ``python -m
tests.pins.test_trajectories`` before the code that builds and trains methods was
reorganised. Refactors keep them: every loss of every step, and the final weights' sums,
within float32 round-off of the recorded run (one thread, so the reductions run in one order).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).with_name("trajectories.json")
SHORT = dict(steps=6, warmup_steps=2, batch_size=64, log_every=1, code_dim=16, device="cpu")
# (label, options): the seven objectives, NAC's momentum form, and DeepBit on a teacher. The
# baselines were pinned when every method trained with NAC's recipe: --recipe shared keeps it.
SHARED = dict(recipe="shared")
CASES = [
    ("nac", dict(objective="nac")),
    ("nac-momentum", dict(objective="nac", momentum=True, queue_size=128)),
    ("simclr", dict(objective="simclr")),
    ("moco", dict(objective="moco", queue_size=128)),
    ("insdis", dict(objective="insdis", negatives=0, **SHARED)),
    ("insdis-nce", dict(objective="insdis", negatives=32, **SHARED)),
    ("deepbit", dict(objective="deepbit", **SHARED)),
    ("deepbit-teacher", dict(objective="deepbit", teacher="TEACHER", **SHARED)),
    ("ssdh", dict(objective="ssdh", teacher="TEACHER", **SHARED)),
    ("distillhash", dict(objective="distillhash", teacher="TEACHER", **SHARED)),
]


def trajectory(options: dict, teacher: Path, out: Path) -> dict:
    """Per-step losses and the final weights' float64 sums of one short run."""
    from nacvae.checkpoint import load_checkpoint
    from nacvae.runs import CHECKPOINT, read_metrics
    from nacvae.train.config import resolve_config
    from nacvae.train.pretrain import pretrain

    options = {k: (str(teacher) if v == "TEACHER" else v) for k, v in options.items()}
    run = pretrain(resolve_config("digits", **options, **SHORT), out, progress=False)
    model = load_checkpoint(run / CHECKPOINT)["model"]
    return {
        "losses": [r["loss"] for r in read_metrics(run) if r["event"] == "train"],
        "weights": {k: float(v.double().sum()) for k, v in sorted(model.items()) if v.is_floating_point()},
    }


# VAE runs from a random encoder and from the pinned NAC encoder, logistic and Bernoulli.
VAE_SHORT = dict(steps=6, batch_size=64, log_every=1, latent_dim=8, device="cpu", curve_points=2, curve_samples=2,
                 curve_images=50)
VAE_CASES = [
    ("vae-random", dict(init="random")),
    ("vae-nac", dict(encoder="NAC")),
    ("vae-bernoulli-frozen", dict(init="random", likelihood="bernoulli", binarize="stochastic", freeze_encoder=True)),
]


def vae_trajectory(options: dict, nac: Path, out: Path) -> dict:
    from nacvae.checkpoint import load_checkpoint
    from nacvae.runs import CHECKPOINT, read_metrics
    from nacvae.train.vae import resolve_vae_config, train_vae

    options = {k: (str(nac) if v == "NAC" else v) for k, v in options.items()}
    run = train_vae(resolve_vae_config("digits", **options, **VAE_SHORT), out, progress=False)
    metrics = read_metrics(run)
    model = load_checkpoint(run / CHECKPOINT)["model"]
    return {
        "losses": [r["loss"] for r in metrics if r["event"] == "train"],
        "records": [{k: v for k, v in r.items() if k != "images_per_s" and not isinstance(v, str)}
                    for r in metrics if r["event"] in ("test", "curve")],
        "weights": {k: float(v.double().sum()) for k, v in sorted(model.items()) if v.is_floating_point()},
    }


def make_teacher(out: Path) -> Path:
    from nacvae.train.config import resolve_config
    from nacvae.train.pretrain import pretrain

    return pretrain(resolve_config("digits", objective="simclr", **SHORT), out, progress=False)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield make_teacher(tmp_path_factory.mktemp("pin") / "teacher")
    torch.set_num_threads(old)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)


@pytest.mark.parametrize("label,options", CASES, ids=[c[0] for c in CASES])
def test_short_run_matches_the_recorded_trajectory(tmp_path, teacher, label, options):
    golden = json.loads(GOLDEN.read_text())[label]
    torch.set_num_threads(1)
    got = trajectory(options, teacher, tmp_path / "run")
    assert len(got["losses"]) == len(golden["losses"]) == SHORT["steps"]
    assert all(_close(a, b) for a, b in zip(got["losses"], golden["losses"])), (got["losses"], golden["losses"])
    assert got["weights"].keys() == golden["weights"].keys()
    off = {k: (got["weights"][k], v) for k, v in golden["weights"].items() if not _close(got["weights"][k], v)}
    assert not off, off


@pytest.fixture(scope="module")
def nac_encoder(tmp_path_factory):
    torch.set_num_threads(1)
    return pretrain_nac(tmp_path_factory.mktemp("pin") / "nac")


def pretrain_nac(out: Path) -> Path:
    from nacvae.train.config import resolve_config
    from nacvae.train.pretrain import pretrain

    return pretrain(resolve_config("digits", objective="nac", **SHORT), out, progress=False)


@pytest.mark.parametrize("label,options", VAE_CASES, ids=[c[0] for c in VAE_CASES])
def test_short_vae_run_matches_the_recorded_trajectory(tmp_path, nac_encoder, label, options):
    golden = json.loads(GOLDEN.read_text())[label]
    torch.set_num_threads(1)
    got = vae_trajectory(options, nac_encoder, tmp_path / "run")
    assert len(got["losses"]) == len(golden["losses"]) == VAE_SHORT["steps"]
    assert all(_close(a, b) for a, b in zip(got["losses"], golden["losses"])), (got["losses"], golden["losses"])
    assert [r.keys() for r in got["records"]] == [r.keys() for r in golden["records"]]
    for mine, theirs in zip(got["records"], golden["records"]):
        assert all(_close(float(mine[k]), float(theirs[k])) for k in theirs), (mine, theirs)
    off = {k: (got["weights"][k], v) for k, v in golden["weights"].items() if not _close(got["weights"][k], v)}
    assert not off, off


if __name__ == "__main__":  # writes the golden file (or, with an argument, a file to compare)
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        t = make_teacher(Path(tmp) / "teacher")
        result = {label: trajectory(options, t, Path(tmp) / label) for label, options in CASES}
        nac = pretrain_nac(Path(tmp) / "vae-encoder")
        result.update({label: vae_trajectory(options, nac, Path(tmp) / label) for label, options in VAE_CASES})
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else GOLDEN
    target.write_text(json.dumps(result, indent=1) + "\n")
