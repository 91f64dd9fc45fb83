"""``--config FILE``: settings read from TOML or a run's config.json, under the typed options."""

import json
import re
from pathlib import Path

import pytest

from nacvae.errors import ConfigError
from nacvae.train.config import resolve_config
from nacvae.train.config_file import read_settings, settings_with_file

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide.md"


def test_the_guides_toml_example_resolves(tmp_path):
    text = re.search(r"<!-- config-example -->\s*```toml\n(.*?)```", GUIDE.read_text(), re.S).group(1)
    path = tmp_path / "nac.toml"
    path.write_text(text)
    settings = read_settings(path, "pretrain")
    cfg = resolve_config(settings.pop("data"), **settings)
    assert (cfg.steps, cfg.code_dim, cfg.log_every, cfg.options["flip_prob"]) == (3000, 64, 20, 0.4)


def test_typed_options_win_and_a_typed_length_replaces_the_other(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text('epochs = 3\nwarmup-steps = 7\nlr = 0.5\nflip_prob = 0.3\n')
    merged = settings_with_file(path, "pretrain", {"data": "digits", "steps": 11, "lr": None}, typed={"steps"})
    assert merged["steps"] == 11 and "epochs" not in merged and merged["lr"] == 0.5 and merged["warmup_steps"] == 7
    # Another method than the file's keeps its own options.
    other = settings_with_file(path, "pretrain", {"objective": "simclr"}, typed={"objective"})
    assert "flip_prob" not in other and resolve_config("digits", **other).objective == "simclr"


@pytest.mark.parametrize("text,fragment", [
    ("learning_rate = 0.1\n", "'learning_rate' is not a pretraining setting"),
    ("[options]\nflip = 0.1\n", "'flip' is not an option of any pretraining method"),
    ("steps = \n", "is not valid TOML"),
])
def test_bad_files_are_one_sentence(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        read_settings(path, "pretrain")


def test_vae_keys_and_sections(tmp_path):
    path = tmp_path / "v.toml"
    path.write_text('[vae]\nlatent_dim = 8\ndecoder_width = 16\n')
    assert read_settings(path, "vae") == {"latent_dim": 8, "decoder_width": 16}
    path.write_text('flip_prob = 0.1\n')
    with pytest.raises(ConfigError, match="'flip_prob' is not a VAE setting"):
        read_settings(path, "vae")


def test_an_older_flat_run_config_gives_its_methods_options(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    section = {"data": "digits", "objective": "nac", "flip_prob": 0.2, "temperature": None, "steps": 5}
    (run / "config.json").write_text(json.dumps({"kind": "pretrain", "pretrain": section}))
    settings = read_settings(run, "pretrain")
    assert settings["flip_prob"] == 0.2 and "temperature" not in settings


def test_a_run_config_whose_data_folder_is_gone_is_refused(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"kind": "pretrain", "pretrain": {"data_dir": str(tmp_path / "no")}}))
    with pytest.raises(ConfigError, match="pass --data-dir"):
        settings_with_file(run / "config.json", "pretrain", {}, typed=set())
    assert settings_with_file(run, "pretrain", {"data_dir": "x"}, typed={"data_dir"})["data_dir"] == "x"
