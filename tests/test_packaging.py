"""The installed distribution adds one top-level name, ``nacvae``, to a user's environment."""

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _options():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser


def test_every_installed_package_lives_under_nacvae():
    packages = _options()["options"]["packages"].split()
    assert packages and all(p == "nacvae" or p.startswith("nacvae.") for p in packages)
    # Every package folder in the tree is listed, so none is silently left out of a wheel.
    mapped = {"nacvae.cli": ROOT / "cli"}
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "nacvae").rglob("__init__.py")}
    assert found | set(mapped) == set(packages)
    assert all((path / "__init__.py").is_file() for path in mapped.values())


def test_console_script_and_module_entry_use_the_installed_name():
    scripts = _options()["options.entry_points"]["console_scripts"]
    assert scripts.split("=", 1)[1].strip() == "nacvae.cli.main:main"
    import nacvae.cli.main

    assert callable(nacvae.cli.main.main)
