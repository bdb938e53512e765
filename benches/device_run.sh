#!/usr/bin/env bash
# Runs on a GPU machine what benches/device_pack.sh packed into .device/, writing reports under
# $OUT (default ./device-out). One step per call, each well under ten minutes on an H100:
#
#   benches/device_run.sh tests   # parity (every op, CPU vs GPU), the device, cross-check, backend,
#                                 # attention, recurrent, transformer and GPT suites on the GPU
#   benches/device_run.sh bench   # benchmark table: kiln, Burn wgpu, PyTorch CUDA (TF32 off, on)
#   benches/device_run.sh train   # quickstart, MNIST MLP and LeNet-5 trained on the GPU
#   benches/device_run.sh gpt     # char_gpt --preset cpu for 50 steps under KILN_CHECK, then
#                                 # --preset gpu for as long as GPT_SECONDS (default 300) allows
set -euo pipefail
cd "$(dirname "$0")/.."
step="${1:?usage: benches/device_run.sh tests|bench|train|gpt}"
dev=.device
out="${OUT:-device-out}"
mkdir -p "$out"

unxz() { python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$@"; }
if [ ! -d "$dev/bin" ]; then python3 -c 'import tarfile, sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$dev/bin.tar.xz" "$dev"; fi

# Vulkan's loader, and NVIDIA's driver manifest where the container keeps it
for f in "$dev"/gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; fi
export KILN_REQUIRE_GPU=1 KILN_DEVICE=gpu
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/gpu.txt" 2>&1 || true

case "$step" in
tests)
    for t in parity device check backend attention recurrent transformer gpt models_checked fusion subgroups optim; do
        # a failing suite does not stop the others
        "$dev/bin/$t" 2>&1 | tee "$out/test-$t.txt" | grep -E '^test |test result' || true
    done
    ;;
bench)
    if [ -f "$dev/peers/burn-peer-bench.xz" ] && [ ! -x "$dev/peers/burn-peer-bench" ]; then
        unxz "$dev/peers/burn-peer-bench.xz" "$dev/peers/burn-peer-bench"
        chmod +x "$dev/peers/burn-peer-bench"
    fi
    burn=""
    if [ -x "$dev/peers/burn-peer-bench" ]; then burn="$dev/peers/burn-peer-bench"; fi
    KILN_BENCH="$dev/bin/bench" BURN_PEER="$burn" PEERS="$dev/peers" benches/compare.sh gpu --reps 30 |
        tee "$out/bench-gpu.md"
    ;;
train)
    "$dev/bin/quickstart" 2>&1 | tee "$out/quickstart-gpu.txt" | tail -3
    for e in mnist_mlp mnist_lenet; do
        start=$(date +%s)
        "$dev/bin/$e" --device gpu --data "$dev/data" --epochs 10 --out "$out/$e" 2>&1 |
            tee "$out/$e-gpu.txt" | tail -4
        echo "$e: $(($(date +%s) - start)) s wall-clock" | tee -a "$out/$e-gpu.txt"
    done
    ;;
gpt)
    # every GPU op of 50 training steps compared with its CPU reference
    KILN_CHECK=1 "$dev/bin/char_gpt" --device gpu --data "$dev/data" --preset cpu --max-steps 50 \
        --log-interval 10 --eval-batches 20 2>&1 | tee "$out/char_gpt-check.txt" | tail -8
    # nanoGPT's baby GPT: its speed, and its validation loss every 250 steps until time runs out
    timeout "${GPT_SECONDS:-300}" "$dev/bin/char_gpt" --device gpu --data "$dev/data" --preset gpu \
        --log-interval 25 --eval-interval 250 --eval-batches 20 2>&1 | tee "$out/char_gpt-gpu.txt" |
        grep -E 'GPT|step +(1|25|50|100|250|500|1000|2000|3000|4000|5000):|validation' || true
    ;;
*)
    echo "unknown step $step" >&2
    exit 2
    ;;
esac
