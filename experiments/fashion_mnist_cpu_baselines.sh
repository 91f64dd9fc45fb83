#!/usr/bin/env bash
# The CPU-scale Fashion-MNIST study with the paper's other baselines: the encoders of
# fashion_mnist_cpu.sh (random, NAC at p = 0.1 and at the retrieval p, SimCLR, MoCo-v2) plus
# InsDis, DeepBit, SSDH and DistillHash (SSDH and DistillHash label pairs with the same seed's
# SimCLR encoder, DeepBit trains its hash layer on that encoder's frozen backbone), every
# encoder 1,400 steps on the same 5,000 images. The new baselines are evaluated (linear
# probe, retrieval, codes) and get no VAE. The four new encoders took 50-63 minutes a seed
# single-threaded beside other jobs on 2 cores; started in a copy of a fashion_mnist_cpu.sh
# study folder, only they are trained (docs/results.md).
#   bash experiments/fashion_mnist_cpu_baselines.sh [OUT] [SEEDS] [more reproduce options]
set -euo pipefail
out="${1:-runs/study-fashion-mnist-baselines}"
seeds="${2:-3}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
resume=()
if [ -d "$out" ]; then resume=(--resume); fi
nacvae reproduce --preset fashion-mnist-cpu-baselines --seeds "$seeds" --out "$out" --quiet "${resume[@]}" "${@:3}"
