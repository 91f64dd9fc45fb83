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
    module = importlib.import_module(registry.module_name(name))
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
    monkeypatch.setitem(registry._specs(), "simclr", (recipe, registry.module_name("simclr")))
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
