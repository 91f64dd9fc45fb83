"""Running the ``nacvae`` command in-process and checking its failures."""

from click.testing import CliRunner


def nacvae(*args):
    """Runs the click application as the console script does; re-raises unexpected errors."""
    from nacvae.cli.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], prog_name="nacvae")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def assert_clean_failure(result, fragment, usage_error=False):
    """Exit code 2, no traceback, and one sentence naming ``fragment`` (click's own usage
    errors print a usage line and a hint first)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert fragment in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    if usage_error:
        assert len(lines) <= 3, result.stderr
    else:
        assert len(lines) == 1 and lines[0].startswith("Error: ") and lines[0].endswith("."), result.stderr
