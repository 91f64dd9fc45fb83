"""nacvae's VAE training loop against a plain PyTorch loop over the same model, in one process.

Both train the same VAE (the digits preset's, from a random encoder: ``build_vae``) with
the same Adam and the same negative ELBO (``nacvae.train.elbo``), on the same batches:

- ``nacvae``: ``train_vae`` end to end (per-step seeds, metrics, TensorBoard events, the
  test ELBO at every epoch's end, the convergence curve, automatic checkpoints), timed
  from the first step to the last by its own ``images_per_s`` records, which leave out
  the evaluations; and its wall time over the whole loop, evaluations and saves included;
- ``plain``: a bare loop ``loss.backward(); optimizer.step()`` over the same shuffled batches,
  nothing else.

Rounds alternate the two (plain, nacvae, nacvae, plain, ...) so that a drift in the
machine's load cancels; the medians are printed with their ratio. Run it on a quiet
machine (``uptime``) with the thread count stated.

    python experiments/bench_vae.py --threads 2 --epochs 20 --rounds 3

Both loops run in each precision of ``--precisions`` in turn (float32, then bf16 autocast as
``nacvae vae --amp`` runs it), so that the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def plain_images_per_s(cfg, epochs: int) -> float:
    """The bare loop, in the precision ``cfg.amp`` names (bf16 autocast as nacvae runs it, or float32)."""
    import torch

    from nacvae.data.sources import channel_stats, load_dataset
    from nacvae.models.vae_inputs import vae_observations
    from nacvae.train.elbo import negative_elbo
    from nacvae.train.vae import build_vae, resolve_encoder_init

    train = load_dataset(cfg.data, "train")
    mean, std = channel_stats(cfg.data, train)
    backbone, feature_dim, _ = resolve_encoder_init(cfg, train.image_shape)  # the random encoder train_vae builds
    vae = build_vae(cfg, backbone, feature_dim, train.image_shape, mean, std)
    vae.set_precision(torch.bfloat16 if cfg.amp else None)
    optimizer = torch.optim.Adam([p for p in vae.parameters() if p.requires_grad], lr=cfg.lr)
    images = train.images
    n = len(images) // cfg.batch_size * cfg.batch_size
    g = torch.Generator().manual_seed(cfg.seed)
    vae.train()
    started = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=g)[:n]
        for s in range(0, n, cfg.batch_size):
            x = vae_observations(images[order[s:s + cfg.batch_size]], cfg.likelihood, cfg.binarize, None)
            loss, _, _ = negative_elbo(vae, x, 1.0, cfg.elbo)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return epochs * n / (time.perf_counter() - started)


def nacvae_images_per_s(cfg, out: Path) -> tuple[float, float]:
    """(median of the run's images_per_s records, images over the loop's wall time)."""
    from nacvae.runs import read_metrics
    from nacvae.train.vae import train_vae

    started = time.perf_counter()
    train_vae(cfg, out, progress=False)
    wall = time.perf_counter() - started
    rows = [r for r in read_metrics(out) if r["event"] == "train"]
    steps = rows[-1]["step"]
    return statistics.median(r["images_per_s"] for r in rows), steps * cfg.batch_size / wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--precisions", default="float32,bf16",
                   help="comma-separated: float32 and/or bf16 (both loops in that precision)")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from nacvae.train.vae import resolve_vae_config

    results = []
    for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        cfg = resolve_vae_config("digits", init="random", epochs=args.epochs, batch_size=args.batch_size,
                                 device="cpu", eval_samples=0, amp=precision == "bf16")
        plain, timed, wall = [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                order = ("plain", "nacvae") if r % 2 == 0 else ("nacvae", "plain")
                for which in order:
                    if which == "plain":
                        plain.append(plain_images_per_s(cfg, args.epochs))
                    else:
                        t, w = nacvae_images_per_s(cfg, Path(tmp) / f"run{r}")
                        timed.append(t)
                        wall.append(w)
        result = {
            "precision": precision, "threads": args.threads, "epochs": args.epochs, "batch_size": args.batch_size,
            "rounds": args.rounds, "plain_images_per_s": statistics.median(plain),
            "nacvae_images_per_s": statistics.median(timed), "nacvae_wall_images_per_s": statistics.median(wall),
        }
        result["ratio_timed"] = result["nacvae_images_per_s"] / result["plain_images_per_s"]
        result["ratio_wall"] = result["nacvae_wall_images_per_s"] / result["plain_images_per_s"]
        results.append(result)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
