"""--threads on every command; --help and --version stay instant (no torch import)."""

import os
import subprocess
import sys
import textwrap

import click
import pytest
import torch

from nacvae.cli.main import cli
from tests.clitools import assert_clean_failure, nacvae


def _leaf_commands(group, path=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaf_commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_command_has_threads():
    commands = list(_leaf_commands(cli))
    assert len(commands) >= 8
    for path, command in commands:
        assert any(p.name == "threads" for p in command.params), path


def test_bad_thread_count_fails_with_one_sentence(monkeypatch):
    assert_clean_failure(nacvae("eval", "codes", "--init", "random", "--threads", "0"), "positive integer or 'auto'")
    monkeypatch.setenv("NACVAE_THREADS", "lots")
    assert_clean_failure(nacvae("pretrain", "--steps", "1"), "positive integer or 'auto'")


def test_threads_option_sets_torch(monkeypatch):
    # The command writes the thread variables into the environment: keep them to this test.
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != "NACVAE_THREADS"})
    before = torch.get_num_threads()
    try:
        result = nacvae("eval", "codes", "--init", "random", "--threads", "2", "--json")
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 2 and os.environ["OMP_NUM_THREADS"] == "2"
    finally:
        torch.set_num_threads(before)


def _run(code: str, env=None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "NACVAE_THREADS")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full_env,
                          timeout=300)


def test_help_and_version_do_not_import_torch():
    code = """
        import sys
        from nacvae.cli.main import cli
        for args in (["--help"], ["--version"], ["pretrain", "--help"], ["eval", "linear", "--help"],
                     ["vae", "--help"], ["reproduce", "--help"], ["export", "--help"], ["eval", "loglik", "--help"]):
            try:
                cli.main(args, prog_name="nacvae")
            except SystemExit as exc:
                assert exc.code == 0, (args, exc.code)
        print("torch imported:", "torch" in sys.modules)
    """
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert "torch imported: False" in result.stdout
    assert "--threads N|auto" in result.stdout


def test_threads_are_decided_before_torch_starts():
    """The option's callback runs while the options are parsed, so torch's OpenMP runtime
    starts with the chosen thread count and the passive wait policy."""
    code = """
        import os, sys
        import click
        from nacvae.cli.main import cli
        from nacvae.cli.options import add_threads_option

        @click.command()
        def probe():
            assert "torch" not in sys.modules
            import torch
            print("threads", torch.get_num_threads(), os.environ["OMP_WAIT_POLICY"])

        add_threads_option(probe)
        cli.add_command(probe)
        cli.main(["probe"], prog_name="nacvae", standalone_mode=False)
    """
    result = _run(code, {"NACVAE_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert "threads 1 PASSIVE" in result.stdout
