"""The pretraining loop on the bundled digits: run folder contents, exact resume, failures."""

import json
import os
import subprocess
import sys

import pytest
import torch

from nacvae.checkpoint import backbone_state_dict, load_checkpoint
from nacvae.errors import ConfigError, TrainingError
from nacvae.runs import CHECKPOINT, read_config, read_metrics
from nacvae.train.config import resolve_config
from tests.interrupt import kill_mid_run
from nacvae.train.pretrain import pretrain

TINY = dict(epochs=2, batch_size=256, log_every=2, code_dim=16)


@pytest.mark.parametrize("objective,momentum", [("nac", False), ("nac", True), ("simclr", False), ("moco", False)])
def test_run_folder_is_complete_and_self_describing(tmp_path, objective, momentum):
    options = dict(momentum=momentum) if objective == "nac" else {}
    if momentum or objective == "moco":
        options["queue_size"] = 64
    cfg = resolve_config("digits", objective=objective, **options, **TINY)
    run = pretrain(cfg, tmp_path / "run", progress=False)
    config = read_config(run)
    assert config["status"] == "complete" and config["kind"] == "pretrain" and config["objective"] == objective
    ckpt = load_checkpoint(run / CHECKPOINT, kind="pretrain", expect={"arch": "smallconv"})
    assert ckpt["complete"] and ckpt["step"] == config["total_steps"] == 2 * (1438 // 256)
    assert ckpt["meta"]["code_dim"] == 16 and ckpt["meta"]["image_shape"] == [1, 8, 8]
    assert "features.0.weight" in backbone_state_dict(ckpt)
    train = [r for r in read_metrics(run) if r["event"] == "train"]
    assert train[-1]["step"] == ckpt["step"]
    assert {"loss", "lr", "images_per_s", "code_abs_mean", "code_positive_fraction", "code_distinct_in_batch"} <= set(train[0])
    # NAC (both forms) logs the distance from its trivial solution on every row, the others do not.
    assert all(("loss_minus_log2b" in r) == (objective == "nac") for r in train)
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run / "tb"))


def test_same_seed_same_weights(tmp_path):
    cfg = resolve_config("digits", **TINY)
    a = load_checkpoint(pretrain(cfg, tmp_path / "a", progress=False) / CHECKPOINT)["model"]
    b = load_checkpoint(pretrain(cfg, tmp_path / "b", progress=False) / CHECKPOINT)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def _train_command(out, epochs):
    code = (
        "import sys; from nacvae.train.config import resolve_config; from nacvae.train.pretrain import pretrain;"
        f"pretrain(resolve_config('digits', epochs={epochs}, batch_size=128, code_dim=16, checkpoint_every=1,"
        f" log_every=1, objective='moco', queue_size=100), sys.argv[1], resume=sys.argv[2] == '1', progress=False)"
    )
    return [sys.executable, "-c", code, str(out)]


def test_killed_run_resumes_to_identical_weights(tmp_path):
    """A run killed mid-way and resumed ends with the weights of one never interrupted."""
    epochs = 2
    total = epochs * (1438 // 128)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_train_command(tmp_path / "whole", epochs) + ["0"], check=True, env=env)

    killed = tmp_path / "killed"
    interrupted_at = kill_mid_run(_train_command(killed, epochs) + ["0"], killed, env)
    assert 0 < interrupted_at < total, "the run should have been killed mid-way"
    assert read_config(killed)["status"] == "running"

    subprocess.run(_train_command(killed, epochs) + ["1"], check=True, env=env)
    whole = load_checkpoint(tmp_path / "whole" / CHECKPOINT)
    resumed = load_checkpoint(killed / CHECKPOINT)
    assert resumed["step"] == whole["step"] == total
    for key, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    steps = [r["step"] for r in read_metrics(killed) if r["event"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == total


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from nacvae.methods import nac as methods

    calls = {"n": 0}
    real = methods.NAC.loss

    def poisoned(self, x1, x2, generator):
        loss, a1 = real(self, x1, x2, generator)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] > 7 else loss), a1

    monkeypatch.setattr(methods.NAC, "loss", poisoned)
    cfg = resolve_config("digits", **TINY)
    with pytest.raises(TrainingError, match="non-finite"):
        pretrain(cfg, tmp_path / "run", progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert ckpt["step"] == 1438 // 256 and not ckpt["complete"]
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert json.loads((tmp_path / "run" / "config.json").read_text())["status"] == "failed"


def test_used_output_folder_needs_resume(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "something").write_text("x")
    with pytest.raises(ConfigError, match="already used"):
        pretrain(resolve_config("digits", **TINY), tmp_path / "run", progress=False)
