#!/usr/bin/env bash
# The CUDA path in one go, for a machine with a GPU (about 5 minutes on one H100/H200):
# the pipeline benchmark (small conv net and ResNet-18, bf16 autocast, channels-last,
# on-device augmentation) against a PIL DataLoader, the host-device syncs of one step,
# one NAC epoch of ResNet-18 over 50,000 32x32 images, and a short real `nacvae pretrain`
# and VAE on the GPU. Prints everything; writes run folders under ${1:-runs/gpu-check}.
set -euo pipefail
out="${1:-runs/gpu-check}"
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible"
print(torch.__version__, torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
PY
workers=$(( $(nproc) < 8 ? $(nproc) : 8 ))
python experiments/bench_pipeline.py --arch smallconv --batch-size 256 --steps 20 --warmup 5 --rounds 3 --images 20000 --workers "$workers"
python experiments/bench_pipeline.py --arch resnet18 --batch-size 512 --steps 10 --warmup 5 --rounds 2 --images 20000 --workers "$workers"
python experiments/bench_pipeline.py --arch resnet18 --batch-size 1000 --epoch --sync-check --no-conventional --steps 5 --rounds 1
nacvae pretrain --data digits --device cuda --epochs 5 --out "$out/pretrain" --quiet
nacvae vae --data digits --device cuda --encoder "$out/pretrain" --epochs 5 --out "$out/vae" --quiet
nacvae eval loglik --run "$out/vae" --samples 1000 --device cuda --json
nacvae eval retrieval --run "$out/pretrain" --device cuda --json
