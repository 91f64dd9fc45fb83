"""Host-device synchronisations in one step of the VAE training loop (CUDA only).

Runs the step ``nacvae vae`` runs (observations, the ELBO loss, backward, Adam, the
on-device running sums) on synthetic images once to warm up, then once more with CUDA's
sync debug mode on, and lists every call that made the host wait for the GPU.

    python experiments/vae_sync_check.py --arch resnet18 --shape 3 32 32 --batch-size 128
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nacvae.models.backbones import build_backbone  # noqa: E402
from nacvae.models.vae import VAE  # noqa: E402
from nacvae.train.vae import _loss  # noqa: E402
from nacvae.models.vae_inputs import vae_observations  # noqa: E402


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="smallconv", choices=["smallconv", "resnet18", "resnet50"])
    ap.add_argument("--shape", type=int, nargs=3, default=(3, 32, 32), metavar=("C", "H", "W"))
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--likelihood", default="logistic", choices=["logistic", "bernoulli"])
    ap.add_argument("--elbo", default="meanfield", choices=["meanfield", "trace"])
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    print(f"device {device}, VAE step: {args.arch}, {args.likelihood} likelihood, --elbo {args.elbo}, "
          f"batch {args.batch_size} of {'x'.join(map(str, args.shape))}")
    torch.manual_seed(0)
    c, h, w = args.shape
    backbone, feature_dim = build_backbone(args.arch, c, h)
    vae = VAE(backbone, feature_dim, args.shape, latent_dim=32, likelihood=args.likelihood).to(device)
    optimizer = torch.optim.Adam([p for p in vae.parameters() if p.requires_grad], lr=1e-3)
    images = torch.randint(0, 256, (args.batch_size, c, h, w), dtype=torch.uint8, device=device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    finite = torch.ones((), dtype=torch.bool, device=device)

    def step(seed: int) -> None:
        nonlocal finite
        pyro.set_rng_seed(seed)
        x = vae_observations(images, args.likelihood)
        loss, rec, kl = _loss(vae, args.elbo, x, 1.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        b = x.shape[0]
        sums.add_(torch.stack([loss.detach().double(), rec.double() / b, kl.double() / b]))
        finite = finite & torch.isfinite(loss.detach())

    with pyro.validation_enabled(False):  # as in the training loop
        step(0)  # lazy initialisation, cuDNN autotuning and Adam's state happen here
        if device.type != "cuda":
            print("sync check: CUDA only, skipped")
            return
        torch.cuda.synchronize(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                step(1)
            finally:
                torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize(device)
    sites: dict[str, int] = {}
    for w in caught:
        key = f"{Path(w.filename).name}:{w.lineno}"
        sites[key] = sites.get(key, 0) + 1
    print(f"sync check: {len(caught)} synchronising call(s) in one step")
    for site, count in sorted(sites.items()):
        print(f"  {count:3d}x  {site}")
    if not bool(finite):
        print("warning: the loss was not finite")


if __name__ == "__main__":
    main()
