"""``nacvae export``: a pretrained backbone as a plain state dict for use outside nacvae."""

from __future__ import annotations

import click


@click.command()
@click.option("--run", type=click.Path(file_okay=False), default=None, help="A pretraining run folder.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="A pretraining checkpoint.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Where to write the state dict (.pt).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def export(run: str | None, checkpoint: str | None, out: str, force: bool) -> None:
    """Write the backbone's weights with torchvision's key names (load with torch.load)."""
    from nacvae.checkpoint import load_checkpoint
    from nacvae.transfer import checkpoint_path, export_backbone

    path = checkpoint_path(run, checkpoint)
    sd = export_backbone(path, out, overwrite=force)
    meta = load_checkpoint(path)["meta"]
    click.echo(f"Wrote {len(sd)} tensors of a {meta['arch']} backbone ({meta['image_shape'][0]} input channels) to {out}.")
