"""``nacvae compare``."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--markdown", is_flag=True, help="Print a Markdown table instead of text.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Also draw the runs' monitor records (k-NN top-1 and mAP against the step) into this "
                   ".png, .pdf or .svg file.")
def compare(runs: tuple[str, ...], as_json: bool, markdown: bool, plot: str | None) -> None:
    """One table of RUN folders: the settings in which they differ and their newest
    evaluations (every eval_* record of metrics.jsonl)."""
    from nacvae.errors import ConfigError
    from nacvae.studies.compare import compare_table, format_table, plot_monitor

    if as_json and markdown:
        raise ConfigError("Give --json or --markdown, not both.")
    table = compare_table(list(runs))
    if plot is not None:
        for run in plot_monitor(list(runs), plot):
            click.echo(f"{run} has no monitor records, so the figure leaves it out.", err=True)
        table["plot"] = plot
    if as_json:
        click.echo(json.dumps(table))
        return
    click.echo(format_table(table, markdown=markdown))
    if plot is not None:
        click.echo(f"Figure: {plot}")
