"""Settings read from a file (``--config FILE`` of ``pretrain`` and ``vae``): a TOML file, or
a run's config.json (or its folder), whose ``pretrain`` / ``vae`` section repeats that run.

The file takes the place of the options not typed on the command line; the result still
goes through ``resolve_config`` / ``resolve_vae_config``, so it is checked and recorded as
any other run's configuration.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from nacvae import registry
from nacvae.errors import ConfigError
from nacvae.runs import CONFIG, read_run_config
from nacvae.train.config import ALTERNATIVES, PretrainConfig
from nacvae.train.vae_config import VAEConfig

CLASSES = {"pretrain": PretrainConfig, "vae": VAEConfig}
WHAT = {"pretrain": "pretraining", "vae": "VAE"}


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ConfigError(f"Reading {path} needs Python 3.11 or the tomli package (pip install tomli).") from None
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({str(exc).rstrip('.')}).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read ({getattr(exc, 'strerror', None) or exc}).") from None


def _is_run_config(path: Path) -> bool:
    return path.is_dir() or path.suffix == ".json"


def read_settings(path: str | Path, kind: str) -> dict[str, Any]:
    """The ``kind`` settings that file ``path`` holds, by setting name; a method's options
    are plain names too (as ``resolve_config`` takes them). A key that is no setting of
    ``kind`` is a ConfigError naming it."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"The --config file {path} does not exist.")
    if _is_run_config(path):
        run = path if path.is_dir() else path.parent
        if path.is_file() and path.name != CONFIG:
            raise ConfigError(f"--config {path}: give a TOML file or a run's {CONFIG}.")
        section = read_run_config(run, kind)[kind]
        label = str(path if path.is_file() else path / CONFIG)
    else:
        table = _load_toml(path)
        # A TOML file may hold the settings at its top level or, as config.json does, in a section.
        section = table[kind] if isinstance(table.get(kind), dict) else table
        section = {k.replace("-", "_"): v for k, v in section.items()}
        label = str(path)
    settings = _checked(section, kind, label)
    if kind == "pretrain" and _is_run_config(path) and "options" not in section:
        # config.json of older runs: every method's options at the top level (from_dict reads them).
        settings = {k: v for k, v in settings.items() if k not in registry.all_options()}
        settings.update(PretrainConfig.from_dict(section).options)
    if kind == "pretrain" and _is_run_config(path) and "recipe" not in section:
        settings["recipe"] = "shared"  # a run saved before methods had recipes of their own
    return settings


def _checked(section: dict[str, Any], kind: str, label: str) -> dict[str, Any]:
    fields = {f.name for f in dataclasses.fields(CLASSES[kind])}
    method_options = registry.all_options() if kind == "pretrain" else {}
    settings: dict[str, Any] = {}
    for key, value in section.items():
        if kind == "pretrain" and key == "options":
            if not isinstance(value, dict):
                raise ConfigError(f"{label}: 'options' must be a table of the method's options.")
            for name, v in value.items():
                name = name.replace("-", "_")
                if name not in method_options:
                    raise ConfigError(f"{label}: '{name}' is not an option of any pretraining method.")
                settings[name] = v
        elif key in fields or key in method_options:
            settings[key] = value
        else:
            raise ConfigError(f"{label}: '{key}' is not a {WHAT[kind]} setting.")
    return settings


def settings_with_file(path: str | Path, kind: str, options: dict[str, Any], typed: set[str]) -> dict[str, Any]:
    """``options`` (a command's settings, typed or left at their defaults) with those not in
    ``typed`` taken from file ``path``, where it sets them."""
    from_file = read_settings(path, kind)
    if kind == "pretrain":
        objective = options.get("objective")
        if "objective" in typed and objective != from_file.get("objective", PretrainConfig.objective):
            # The file's method options belong to its method; another method keeps its own defaults.
            from_file = registry.settings_for(objective, from_file)
        for a, b in ALTERNATIVES:  # a typed length in steps replaces the file's in epochs, and vice versa
            for mine, other in ((a, b), (b, a)):
                if mine in typed:
                    from_file.pop(other, None)
    merged = dict(options)
    merged.update({k: v for k, v in from_file.items() if k not in typed})
    data_dir = from_file.get("data_dir")
    if _is_run_config(Path(path)) and "data_dir" not in typed and data_dir is not None and not Path(data_dir).is_dir():
        # The run was made where its data were; on another machine they are elsewhere.
        raise ConfigError(f"The run in --config {path} read its data from {data_dir}, which is not a folder here; "
                          "pass --data-dir.")
    return merged

