#!/usr/bin/env bash
# The CPU-scale study on Fashion-MNIST: NAC (p = 0.1, and the retrieval p), SimCLR, MoCo-v2
# and random encoders, every encoder 1,400 steps. About 62 CPU-minutes a seed on one core
# (36 minutes on 2 quiet cores; docs/results.md).
# Needs the dataset (apt-get install dataset-fashion-mnist, or torchvision's files under
# --data-dir). Seeds run one after another and each seed's rows land in OUT/seed-N/ as it
# finishes; run the same command again to continue a stopped study.
#   bash experiments/fashion_mnist_cpu.sh [OUT] [SEEDS] [more reproduce options]
set -euo pipefail
out="${1:-runs/study-fashion-mnist}"
seeds="${2:-3}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
resume=()
if [ -d "$out" ]; then resume=(--resume); fi
nacvae reproduce --preset fashion-mnist-cpu --seeds "$seeds" --out "$out" --quiet "${resume[@]}" "${@:3}"
