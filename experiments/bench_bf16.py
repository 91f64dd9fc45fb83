"""bf16 against float32 on this CPU, for each workload nacvae's precision rule times.

For every workload the rule of ``nacvae/precision.py`` is applied to: the encoder's
training step (forward and backward of a copy, as ``nacvae pretrain`` times it), the VAE's
training step (the ELBO and its gradients), and the evaluators' forward pass, this prints
the float32 and bf16 seconds per call (medians of interleaved calls, ``time_both``), their
ratio and what the rule would choose, quiet and, with ``--contend K``, beside K busy
processes (one core each). The batches are those nacvae uses: the probe's share of a
pretraining batch of 256 images in two views, the VAE's batch, 1,000 images for features.

    python experiments/bench_bf16.py --contend 1              # threads as nacvae chooses them
    python experiments/bench_bf16.py --threads 2 --contend 1  # 2 threads beside the busy process too
    python experiments/bench_bf16.py --resnet                 # also ResNet-18 (slow on a CPU)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nacvae.threads import configure_threads  # noqa: E402  (imports neither torch nor numba)

if __name__ == "__main__":
    threads = next((sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == "--threads"), None)
    configure_threads(threads)

import torch  # noqa: E402

from bench_pipeline import Contention  # noqa: E402
from nacvae.models.backbones import build_backbone, stem_for  # noqa: E402
from nacvae.models.heads import PretrainEncoder  # noqa: E402
from nacvae.models.vae import VAE  # noqa: E402
from nacvae.precision import MIN_GAIN, cpu_has_native_bf16, probe_images, time_both  # noqa: E402
from nacvae.train.methods import encoder_step_probe  # noqa: E402
from nacvae.train.vae import vae_step_probe  # noqa: E402

SHAPES = {"digits": (1, 8, 8), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
VAE_BATCH = {"digits": 128, "fashion-mnist": 256, "cifar10": 256}
CPU = torch.device("cpu")


def encoder(data: str, arch: str) -> PretrainEncoder:
    shape = SHAPES[data]
    backbone, dim = build_backbone(arch, shape[0], shape[1], stem=stem_for(data))
    return PretrainEncoder(backbone, dim, 128)


def workloads(resnet: bool):
    """(label, step(amp)) for every workload."""
    archs = [("smallconv", d) for d in SHAPES] + ([("resnet18", "cifar10")] if resnet else [])
    for arch, data in archs:
        shape = SHAPES[data]
        yield (f"pretrain step, {arch}, {data}, {probe_images(512, shape)} images",
               encoder_step_probe(encoder(data, arch), shape, probe_images(512, shape), CPU))
    for data in ("digits", "fashion-mnist"):
        shape = SHAPES[data]
        backbone, dim = build_backbone("smallconv", shape[0], shape[1], stem=stem_for(data))
        vae = VAE(backbone, dim, shape, latent_dim=16, mean=(0.3,), std=(0.3,))
        x = torch.randint(0, 256, (VAE_BATCH[data], *shape)).float()
        yield f"VAE step, smallconv, {data}, {len(x)} images", vae_step_probe(vae, x)
    for arch, data in archs:
        net = encoder(data, arch).eval().to(memory_format=torch.channels_last)
        x = torch.randn(1000, *SHAPES[data]).contiguous(memory_format=torch.channels_last)

        @torch.no_grad()
        def forward(amp, net=net, x=x):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                net.projector(net.backbone(x))

        yield f"features, {arch}, {data}, 1000 images", forward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default=None,
                    help="torch threads: N, or auto [as nacvae chooses, anew in each phase]")
    ap.add_argument("--contend", type=int, default=0, metavar="K", help="also time beside K busy processes")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per precision")
    ap.add_argument("--resnet", action="store_true", help="also ResNet-18 on CIFAR-sized images")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16 {cpu_has_native_bf16()}, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; the rule: bf16 at >= {MIN_GAIN}x")
    phases = ["quiet"] + ([f"{args.contend} busy"] if args.contend else [])
    print(f"{'workload':52s} " + "  ".join(f"{p + ': fp32 / bf16 ms, ratio':>34s}" for p in phases))
    used = {phase: set() for phase in phases}
    for label, step in workloads(args.resnet):
        cells = []
        for phase in phases:
            with Contention(args.contend if phase != "quiet" else 0):
                # As a command started now would choose them (fixed by --threads N).
                used[phase].add(configure_threads(args.threads)[0])
                fp32, bf16 = time_both(step, repeats=args.repeats)
            gain = fp32 / bf16
            cells.append(f"{1e3 * fp32:9.1f} / {1e3 * bf16:7.1f}  {gain:5.2f}x {'bf16' if gain >= MIN_GAIN else 'fp32'}")
        print(f"{label:52s} " + "  ".join(f"{c:>34s}" for c in cells))
    print("torch threads: " + ", ".join(f"{p} {sorted(t)}" for p, t in used.items()))


if __name__ == "__main__":
    main()
