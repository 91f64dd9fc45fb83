#!/usr/bin/env bash
# The paper's other baselines on their authors' recipes (docs/results.md, "The paper's other
# baselines"): InsDis, DeepBit, SSDH and DistillHash beside a random encoder and the SimCLR
# encoder that teaches DeepBit, SSDH and DistillHash, on digits (1,500 steps of batch 128 per
# encoder) and Fashion-MNIST (1,400 steps of batch 128 on the 5,000-image retrieval subset);
# methods with their own batch size train the same number of epochs. No VAEs. Every process
# runs on one thread; the three Fashion-MNIST seeds run as parallel processes in one study
# folder (about 75 minutes on 2 cores with the digits study beside them).
#   bash experiments/baselines_recipes.sh [OUT] [more reproduce options, e.g. --recipe shared]
set -euo pipefail
out="${1:-runs/baselines-recipes}"
export OMP_NUM_THREADS=1
methods=random,insdis,deepbit,ssdh,distillhash
mkdir -p "$out"
nacvae reproduce --preset digits --methods "$methods" --no-vae --seeds 3 --out "$out/digits" --quiet "${@:2}" \
    > "$out/digits.log" 2>&1 &
for seed in 0 1 2; do
    resume=()
    if [ "$seed" != 0 ]; then sleep 5; resume=(--resume); fi  # seed 0 creates the folder
    nacvae reproduce --preset fashion-mnist-cpu --methods "$methods" --no-vae --seeds 3 --seed "$seed" \
        --out "$out/fashion-mnist" --quiet "${resume[@]}" "${@:2}" > "$out/fashion-mnist-$seed.log" 2>&1 &
done
wait
