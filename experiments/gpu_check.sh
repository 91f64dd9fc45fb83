#!/usr/bin/env bash
# The CUDA path in one go, for a machine with a GPU (about 5 minutes on one H100/H200):
# the pipeline benchmark (small conv net and ResNet-18, bf16 autocast where the GPU has
# native bf16, channels-last, on-device augmentation) against a PIL DataLoader, the
# host-device syncs of one pretraining step and of one VAE step, one NAC epoch of
# ResNet-18 over 50,000 32x32 images, a short real `nacvae pretrain`, VAE and their
# evaluations on the GPU, and with two or more GPUs the cost of --sync-bn under torchrun.
# Ends with one table of every figure against its target (docs/scaling.md, "The GPU check").
#
#   bash experiments/gpu_check.sh [ROOT]        # on a GPU machine
#   bash experiments/gpu_check.sh --cpu [ROOT]  # a small smoke run of the same steps on the CPU
#
# Every run writes a fresh folder ROOT/gpu-check-<time>-<pid> (ROOT defaults to runs), so the
# script can be run again at once; each step's output and exit status are kept in its logs/.
# A failing step does not stop the others. Exit status: 0 when every check passed, 1 otherwise.
# PYTHON selects the interpreter (default: python); nacvae runs as "$PYTHON -m nacvae".
set -uo pipefail
mode=gpu
if [ "${1:-}" = "--cpu" ]; then mode=cpu; shift; fi
root="${1:-runs}"
py="${PYTHON:-python}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$root"
out="$(mktemp -d "$root/gpu-check-$(date +%Y%m%d-%H%M%S)-$$-XXXX")" || exit 1
mkdir -p "$out/logs"
echo "gpu check ($mode): $out"

# step NAME COMMAND...: runs COMMAND, shows its output and keeps it in logs/NAME.log,
# its exit status in logs/NAME.rc.
step() {
    local name="$1"; shift
    echo; echo "== $name: $*"
    "$@" 2>&1 | tee "$out/logs/$name.log"
    echo "${PIPESTATUS[0]}" > "$out/logs/$name.rc"
}

step device "$py" - "$mode" <<'PY'
import json, sys
import torch
info = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
if info["cuda"]:
    from nacvae.precision import has_native_bf16
    device = torch.device("cuda", 0)
    info.update(name=torch.cuda.get_device_name(device), count=torch.cuda.device_count(),
                capability=".".join(map(str, torch.cuda.get_device_capability(device))),
                native_bf16=has_native_bf16(device))
elif sys.argv[1] == "gpu":
    print("no CUDA device is visible; run with --cpu for a smoke run on the CPU")
    sys.exit(1)
print(json.dumps(info))
PY
if [ "$(cat "$out/logs/device.rc")" != 0 ] && [ "$mode" = gpu ]; then
    "$py" "$here/gpu_summary.py" "$out"
    exit 1
fi

cpus=$(nproc)
workers=$(( cpus < 8 ? cpus : 8 ))
bench=("$py" "$here/bench_pipeline.py")
if [ "$mode" = gpu ]; then
    dev=cuda
    step bench-smallconv "${bench[@]}" --arch smallconv --batch-size 256 --steps 20 --warmup 5 --rounds 3 --images 20000 --workers "$workers"
    step bench-resnet18 "${bench[@]}" --arch resnet18 --batch-size 512 --steps 10 --warmup 5 --rounds 2 --images 20000 --workers "$workers"
    step bench-epoch "${bench[@]}" --arch resnet18 --batch-size 1000 --epoch --sync-check --no-conventional --steps 5 --rounds 1
    step vae-sync "$py" "$here/vae_sync_check.py" --arch resnet18 --shape 3 32 32 --batch-size 128
    pretrain_size=(--epochs 5)
    vae_size=(--epochs 5)
    samples=1000
else
    dev=cpu
    small=(--data digits --batch-size 32 --steps 2 --warmup 1 --rounds 1 --images 256 --workers 0)
    step bench-smallconv "${bench[@]}" --arch smallconv "${small[@]}"
    step bench-resnet18 "${bench[@]}" --arch smallconv "${small[@]}"
    step bench-epoch "${bench[@]}" --arch smallconv --data digits --batch-size 64 --images 256 --epoch --sync-check --no-conventional --steps 1 --warmup 1 --rounds 1
    step vae-sync "$py" "$here/vae_sync_check.py" --shape 1 8 8 --batch-size 16
    pretrain_size=(--steps 4 --batch-size 64 --warmup-steps 2 --code-dim 16)
    vae_size=(--epochs 1 --batch-size 256 --latent-dim 4)
    samples=4
fi
step pretrain "$py" -m nacvae pretrain --data digits --device "$dev" "${pretrain_size[@]}" --out "$out/pretrain" --quiet
step vae "$py" -m nacvae vae --data digits --device "$dev" --encoder "$out/pretrain" "${vae_size[@]}" --out "$out/vae" --quiet
step loglik "$py" -m nacvae eval loglik --run "$out/vae" --samples "$samples" --device "$dev" --json
step retrieval "$py" -m nacvae eval retrieval --run "$out/pretrain" --device "$dev" --json

gpus=0
if [ "$mode" = gpu ]; then gpus=$("$py" -c "import torch; print(torch.cuda.device_count())"); fi
if [ "$gpus" -ge 2 ]; then
    # The same short two-GPU pretraining with and without --sync-bn (ResNet-18 on the bundled
    # digits, so no download); the summary compares their images/s over the last 10 steps.
    ddp=("$py" -m torch.distributed.run --standalone --nproc-per-node 2 -m nacvae pretrain --data digits
         --arch resnet18 --batch-size 512 --steps 60 --warmup-steps 10 --device cuda --quiet)
    step ddp "${ddp[@]}" --out "$out/ddp"
    step ddp-sync-bn "${ddp[@]}" --sync-bn --out "$out/ddp-sync-bn"
fi

echo
echo "== summary ($out/summary.md)"
"$py" "$here/gpu_summary.py" "$out"
