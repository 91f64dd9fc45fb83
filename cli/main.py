"""The ``nacvae`` command: a thin click layer over the library."""

from __future__ import annotations

import json
import os
import sys
import time

import click

from nacvae import __version__
from nacvae.errors import NacvaeError


class NacvaeGroup(click.Group):
    """Turns user-caused errors into one sentence on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NacvaeError as exc:
            report_to_launcher(exc)
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


def report_to_launcher(exc: Exception) -> None:
    """Under torchrun, hand the sentence to the launcher too: its failure summary then shows
    it as the root cause instead of a pointer to the traceback documentation, whichever
    process failed first (torchrun stops the others, perhaps before they print)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    record = {"message": {"message": f"Error: {exc}", "extraInfo": {"timestamp": str(int(time.time()))}}}
    try:
        with open(path, "w") as f:
            json.dump(record, f)
    except OSError:
        pass  # the launcher's report is a courtesy; the exit code still says it failed


@click.group(cls=NacvaeGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="nacvae")
def cli() -> None:
    """nacvae: encoder pretraining (NAC, SimCLR, MoCo-v2) for Pyro VAEs, and the paper's evaluations."""


def _register() -> None:
    from nacvae.cli.evaluate import eval_group
    from nacvae.cli.export import export
    from nacvae.cli.options import add_threads_option
    from nacvae.cli.pretrain import pretrain
    from nacvae.cli.reproduce import reproduce
    from nacvae.cli.vae import loglik, vae

    eval_group.add_command(loglik)  # `nacvae eval loglik` lives beside the VAE command
    for command in (pretrain, eval_group, vae, reproduce, export):
        add_threads_option(command)
        cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="nacvae")


if __name__ == "__main__":
    main()
