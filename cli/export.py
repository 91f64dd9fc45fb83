"""``nacvae export``: a pretrained backbone as a plain state dict for use outside nacvae."""

from __future__ import annotations

import click


@click.command()
@click.option("--run", type=click.Path(file_okay=False), default=None, help="A pretraining run folder.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="A pretraining checkpoint.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Where to write the state dict (.pt).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def export(run: str | None, checkpoint: str | None, out: str, force: bool) -> None:
    """Write the backbone's weights with torchvision's key names (load with torch.load), and
    its input normalisation into the file's metadata (docs/guide.md shows how to load it)."""
    from nacvae.transfer import checkpoint_path, export_backbone

    path = checkpoint_path(run, checkpoint)
    sd = export_backbone(path, out, overwrite=force)
    info = sd._metadata["nacvae"]
    numbers = lambda values: ", ".join(f"{v:.4f}" for v in values)  # noqa: E731
    click.echo(f"Wrote {len(sd)} tensors of a {info['arch']} backbone ({info['channels']} input channels) to {out}.")
    click.echo(f"Input: {info['channels']}x{info['image_size']}x{info['image_size']} images scaled to [0, 1], then "
               f"(x - mean) / std per channel with mean ({numbers(info['mean'])}) and std ({numbers(info['std'])}).")
