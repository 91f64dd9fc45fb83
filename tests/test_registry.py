"""The method registry: what it reads from the method modules' source is what they define,
and every consumer (configuration, command line, VAE init) follows it."""

import importlib

import pytest
from click.testing import CliRunner

from nacvae import registry
from nacvae.errors import ConfigError
from nacvae.train.config import resolve_config


@pytest.mark.parametrize("name", registry.names())
def test_the_spec_read_from_source_is_the_module_s_own(name):
    module = importlib.import_module(registry.module_name(name))  # the package's own
    assert module.SPEC == registry.spec(name)
    assert callable(module.build)


def test_the_paper_s_methods_in_its_order():
    assert registry.names() == ("nac", "simclr", "moco", "insdis", "deepbit", "ssdh", "distillhash")
    assert registry.teacher_methods(required=True) == ("ssdh", "distillhash")
    assert registry.teacher_methods(required=False) == ("deepbit",)


def test_options_layer_defaults_preset_and_given():
    cfg = resolve_config("digits", objective="moco")
    assert cfg.options == {"temperature": 0.2, "queue_size": 1_024, "ema": 0.99}
    cfg = resolve_config("fashion-mnist", objective="moco", temperature=0.1)
    assert cfg.options == {"temperature": 0.1, "queue_size": 16_384, "ema": 0.99}
    assert resolve_config("digits", objective="simclr").options == {"temperature": 0.5}


def test_an_option_of_another_method_is_refused():
    with pytest.raises(ConfigError, match="--momentum is an option of --objective nac, not simclr"):
        resolve_config("digits", objective="simclr", momentum=True)
    with pytest.raises(ConfigError, match="--teacher is an option of --objective deepbit, ssdh or distillhash"):
        resolve_config("digits", objective="nac", teacher="x.pt")


def test_a_recipe_sits_between_the_preset_and_the_user(monkeypatch):
    import dataclasses

    spec = registry.spec("simclr")
    recipe = dataclasses.replace(spec, recipe={"optimizer": "sgd", "lr": 0.05, "warmup_epochs": 1})
    monkeypatch.setitem(registry._specs(), "simclr", (recipe, registry.source("simclr")))
    cfg = resolve_config("digits", objective="simclr")
    assert (cfg.optimizer, cfg.lr, cfg.warmup_epochs, cfg.warmup_steps) == ("sgd", 0.05, 1, None)
    assert resolve_config("digits", objective="simclr", lr=0.2).lr == 0.2


def test_a_config_json_from_before_options_had_their_section_loads():
    from nacvae.train.config import PretrainConfig

    flat = {"data": "digits", "objective": "nac", "momentum": True, "flip_prob": 0.2, "temperature": None,
            "queue_size": 64, "ema": 0.9, "l2_weight": 0.0, "negatives": None, "bank_momentum": 0.5,
            "teacher": None, "arch": "smallconv", "epochs": 30, "steps": 10, "extra": {}}
    cfg = PretrainConfig.from_dict(flat)
    assert cfg.options == {"flip_prob": 0.2, "momentum": True, "queue_size": 64, "ema": 0.9, "l2_weight": 0.0}
    assert PretrainConfig.from_dict({"objective": "simclr", "temperature": None}).options == {"temperature": 0.5}


def test_every_option_of_every_method_is_a_flag_of_pretrain():
    from nacvae.cli.main import cli

    text = CliRunner().invoke(cli, ["pretrain", "--help"], terminal_width=200).output
    for name, owners in registry.all_options().items():
        assert owners[0][1].flag in text, name
    vae_text = CliRunner().invoke(cli, ["vae", "--help"], terminal_width=200).output
    assert "|".join(("random",) + registry.names()) in vae_text
    assert "imagenet" not in vae_text and "webdataset" not in vae_text


def _guide_example() -> str:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "guide.md").read_text()
    return re.search(r"<!-- method-example -->\s*```python\n(.*?)```", text, re.S).group(1)


@pytest.fixture
def user_methods(tmp_path, monkeypatch):
    folder = tmp_path / "methods"
    folder.mkdir()
    (folder / "barlow.py").write_text(_guide_example())
    monkeypatch.setenv(registry.USER_METHODS, str(folder))
    return folder


def test_the_guide_s_example_method_registers_and_trains(user_methods, tmp_path, one_thread):
    """docs/guide.md's worked example: one file in $NACVAE_METHODS is a method of its own."""
    import json
    import math

    import torch

    from nacvae.runs import read_metrics
    from nacvae.train.methods import method_module
    from nacvae.train.pretrain import pretrain

    assert "barlow" in registry.names() and registry.spec("barlow").option("redundancy_weight").default == 0.005
    # The loss against a float64 re-derivation, one term at a time.
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randn(16, 4, generator=g, dtype=torch.float64)
    s1, s2 = (z1 - z1.mean(0)) / z1.std(0), (z2 - z2.mean(0)) / z2.std(0)
    c = [[float((s1[:, i] * s2[:, j]).sum()) / 16 for j in range(4)] for i in range(4)]
    expected = sum((1 - c[i][i]) ** 2 for i in range(4)) + 0.1 * sum(
        c[i][j] ** 2 for i in range(4) for j in range(4) if i != j)
    assert math.isclose(float(method_module("barlow").barlow_loss(z1, z2, 0.1)), expected, rel_tol=1e-12)

    cfg = resolve_config("digits", objective="barlow", redundancy_weight=0.01, steps=3, warmup_steps=1,
                         batch_size=64, log_every=1, code_dim=8, device="cpu")
    run = pretrain(cfg, tmp_path / "run", progress=False)
    saved = json.loads((run / "config.json").read_text())
    assert saved["objective"] == "barlow" and saved["pretrain"]["options"] == {"redundancy_weight": 0.01}
    losses = [r["loss"] for r in read_metrics(run) if r["event"] == "train"]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    with pytest.raises(ConfigError, match="--redundancy-weight must be a finite number of at least 0"):
        resolve_config("digits", objective="barlow", redundancy_weight=-1.0)


def test_the_example_method_reaches_the_command_line(user_methods):
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "nacvae", "pretrain", "--help"], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "barlow" in result.stdout and "--redundancy-weight" in result.stdout


def test_a_malformed_user_method_is_one_sentence(tmp_path, monkeypatch):
    (tmp_path / "bad.py").write_text('from nacvae.registry import MethodSpec\nSPEC = MethodSpec(name="bad", summary=f"{1}")\n')
    monkeypatch.setenv(registry.USER_METHODS, str(tmp_path))
    with pytest.raises(ConfigError, match="cannot be read: its SPEC must be a MethodSpec"):
        registry.names()
    monkeypatch.setenv(registry.USER_METHODS, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="not a folder of method modules"):
        registry.names()


def test_every_method_is_described_in_the_method_docs():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "method.md").read_text()
    listed = [line.split("|")[1].strip(" `") for line in text.splitlines() if line.startswith("| `") and not line.startswith("| `--")]
    assert listed == list(registry.names())  # the methods table, in the registry's order


def test_a_method_with_a_linear_hash_layer_trains_and_loads_back(user_methods, tmp_path, monkeypatch, one_thread):
    """A spec's head reaches the encoder, and a run's checkpoint rebuilds it (transfer, eval)."""
    import dataclasses

    from torch import nn

    from nacvae.runs import CHECKPOINT
    from nacvae.train.pretrain import pretrain
    from nacvae.transfer import load_encoder

    linear = dataclasses.replace(registry.spec("barlow"), head="linear")
    monkeypatch.setitem(registry._specs(), "barlow", (linear, registry.source("barlow")))
    cfg = resolve_config("digits", objective="barlow", steps=2, warmup_steps=1, batch_size=64, code_dim=8, device="cpu")
    run = pretrain(cfg, tmp_path / "run", progress=False)
    encoder, meta = load_encoder(run / CHECKPOINT)
    assert isinstance(encoder.projector, nn.Linear) and encoder.projector.out_features == 8
    assert encoder.predictor is None and meta["objective"] == "barlow"


def test_resume_refuses_an_option_of_another_method(tmp_path):
    from nacvae.train.config import check_resume_options

    saved = resolve_config("digits", objective="simclr").to_dict()
    check_resume_options(tmp_path, saved, {"temperature": 0.5, "seed": 0})  # the run's own values
    with pytest.raises(ConfigError, match="--temperature 0.2 cannot be given"):
        check_resume_options(tmp_path, saved, {"temperature": 0.2})
    with pytest.raises(ConfigError, match="a run of --objective simclr, which has no --flip-prob"):
        check_resume_options(tmp_path, saved, {"flip_prob": 0.2})
