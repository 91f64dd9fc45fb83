#!/usr/bin/env bash
# The CPU-scale Fashion-MNIST study with the paper's other baselines: the encoders of
# fashion_mnist_cpu.sh (random, NAC at p = 0.1 and at the retrieval p, SimCLR, MoCo-v2) plus
# InsDis, DeepBit, SSDH and DistillHash (SSDH and DistillHash with the same seed's SimCLR
# encoder as teacher), every encoder 1,400 steps on the same 5,000 images. The new baselines
# are evaluated (linear probe, retrieval, codes) and get no VAE. Not yet run here; four more
# pretrainings than fashion_mnist_cpu.sh, so expect roughly twice its 36 minutes a seed on
# 2 quiet cores (an estimate, not a measurement).
#   bash experiments/fashion_mnist_cpu_baselines.sh [OUT] [SEEDS] [more reproduce options]
set -euo pipefail
out="${1:-runs/study-fashion-mnist-baselines}"
seeds="${2:-3}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
resume=()
if [ -d "$out" ]; then resume=(--resume); fi
nacvae reproduce --preset fashion-mnist-cpu-baselines --seeds "$seeds" --out "$out" --quiet "${resume[@]}" "${@:3}"
