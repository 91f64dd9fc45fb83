"""Write WebDataset tar shards from an image folder, for ``nacvae pretrain --data webdataset:...``.

    python experiments/make_shards.py FOLDER OUT_DIR [--per-shard 1000] [--seed 0]

FOLDER is an image folder as ``folder:PATH`` reads it (one sub-folder per class, or images
directly inside) or an ImageNet split folder (``train/<wnid>/*.JPEG``). The files are put in
a seeded random order, so that each shard mixes the classes, and written unchanged (no
re-encoding) as samples ``<key>.<ext>`` with the class number in ``<key>.cls`` when there
are class sub-folders. Shards are ``OUT_DIR/shard-000000.tar``, ``shard-000001.tar``, ...;
the pattern to train on is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


def list_images(folder: Path) -> tuple[list[Path], list[int] | None]:
    """Image files under ``folder`` and their class numbers (sorted sub-folder names)."""
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        return files, None
    files, labels = [], []
    for number, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(folder / name):
            dirnames.sort()
            for f in sorted(filenames):
                if Path(f).suffix.lower() in IMAGE_EXTENSIONS and not f.startswith("."):
                    files.append(Path(dirpath) / f)
                    labels.append(number)
    return files, labels


def write_shards(folder: Path, out: Path, per_shard: int = 1000, seed: int = 0) -> str:
    """Write the shards; returns the brace pattern that names them."""
    import webdataset as wds

    files, labels = list_images(folder)
    if not files:
        raise SystemExit(f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
    order = list(range(len(files)))
    random.Random(seed).shuffle(order)
    out.mkdir(parents=True, exist_ok=True)
    pattern = str(out / "shard-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=per_shard, verbose=0) as sink:
        for k, i in enumerate(order):
            ext = files[i].suffix.lower().lstrip(".")
            sample = {"__key__": f"{k:09d}", "jpg" if ext == "jpeg" else ext: files[i].read_bytes()}
            if labels is not None:
                sample["cls"] = labels[i]
            sink.write(sample)
        shards = sink.shard
    last = shards - 1
    return str(out / f"shard-{{000000..{last:06d}}}.tar") if last > 0 else str(out / "shard-000000.tar")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-shard", type=int, default=1000, help="images per shard [1000]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the file order [0]")
    args = parser.parse_args(argv)
    pattern = write_shards(args.folder, args.out, args.per_shard, args.seed)
    print(f"Train with: nacvae pretrain --data 'webdataset:{pattern}'")


if __name__ == "__main__":
    sys.exit(main())
