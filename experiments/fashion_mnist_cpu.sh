#!/usr/bin/env bash
# The CPU-scale study on Fashion-MNIST: NAC, SimCLR, MoCo-v2 and random encoders, 3 seeds.
# Needs the dataset (apt-get install dataset-fashion-mnist, or torchvision's files under
# --data-dir). About 30 minutes a seed on 2 quiet CPU cores; writes results.md, results.json and figures/.
set -euo pipefail
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
nacvae reproduce --preset fashion-mnist-cpu --seeds 3 --out "${1:-runs/study-fashion-mnist}" --quiet "${@:2}"
