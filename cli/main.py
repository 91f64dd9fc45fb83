"""The ``nacvae`` command: a thin click layer over the library."""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
import threading


def _leave(signum, frame):
    sys.stderr.write("Interrupted.\n")
    sys.exit(130)


# Ctrl-C while the command line loads leaves quietly; a running command handles it itself.
_loading = threading.current_thread() is threading.main_thread()
_on_sigint = signal.signal(signal.SIGINT, _leave) if _loading else None

import click  # noqa: E402

from nacvae import __version__  # noqa: E402
from nacvae import interrupts  # noqa: E402
from nacvae.cli.launcher import report_to_launcher  # noqa: E402
from nacvae.errors import NacvaeError, Terminated  # noqa: E402


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (kill, a batch scheduler, torchrun) stops a command as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class NacvaeGroup(click.Group):
    """Turns user-caused errors into one sentence on stderr and exit code 2, and Ctrl-C
    or SIGTERM into one word and 130 or 143."""

    def invoke(self, ctx: click.Context):
        try:
            with _sigterm_as_interrupt():
                return super().invoke(ctx)
        except NacvaeError as exc:
            report_to_launcher(exc)
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:
            from nacvae.files import DISK_FULL, NOT_WRITABLE, storage_error

            # Writes outside nacvae.files (TensorBoard events, figures) that the disk refused,
            # and a path given with a name too long for the file system, wherever it is used.
            if exc.errno not in DISK_FULL | NOT_WRITABLE | {errno.ENAMETOOLONG}:
                raise
            click.echo(f"Error: {storage_error(exc, exc.filename)}", err=True)
            sys.exit(2)
        except Terminated:
            click.echo("Terminated.", err=True)
            sys.exit(143)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except Exception:
            if not interrupts.pending():  # else a swallowed Ctrl-C resurfaced as another error
                raise
            click.echo("Interrupted.", err=True)
            sys.exit(130)


@click.group(cls=NacvaeGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="nacvae")
def cli() -> None:
    """nacvae: encoder pretraining (NAC, SimCLR, MoCo-v2) for Pyro VAEs, and the paper's evaluations."""


def _register() -> None:
    from nacvae.cli.compare import compare
    from nacvae.cli.evaluate import eval_group
    from nacvae.cli.export import export
    from nacvae.cli.options import add_threads_option
    from nacvae.cli.pretrain import pretrain
    from nacvae.cli.reproduce import reproduce
    from nacvae.cli.vae import loglik, vae

    eval_group.add_command(loglik)  # `nacvae eval loglik` lives beside the VAE command
    for command in (pretrain, eval_group, vae, reproduce, export, compare):
        add_threads_option(command)
        cli.add_command(command)


_register()
if _loading:
    keep = _on_sigint not in (None, signal.default_int_handler)  # an embedding program's own handler
    signal.signal(signal.SIGINT, _on_sigint if keep else interrupts.on_sigint)


def main() -> None:
    cli(prog_name="nacvae")


if __name__ == "__main__":
    main()
