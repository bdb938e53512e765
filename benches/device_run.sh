#!/usr/bin/env bash
# Runs on a GPU machine what benches/device_pack.sh packed into .device/, writing reports under
# $OUT (default ./device-out): the logs go into $OUT/logs.tar.gz (the device tool returns at
# most 8 files) and a short summary is printed last. Each step is time-boxed (seconds in
# brackets, override with the variables) so that one call fits a lease:
#
#   benches/device_run.sh tests   # [TESTS_S=150] the GPU suites (parity of every op, CPU vs GPU;
#                                 # the device, cross-check, backend, attention, recurrent,
#                                 # transformer, GPT, f16, memory ... suites), all at once
#   benches/device_run.sh bench   # [KILN_S=130, PEER_S=40 each] benchmark table: kiln, Burn
#                                 # wgpu, PyTorch CUDA with TF32 off and on
#   benches/device_run.sh train   # [TRAIN_S=80] quickstart under KILN_CHECK=1, the MNIST MLP for
#                                 # ten epochs
#   benches/device_run.sh gpt     # [GPT_SECONDS=300] char_gpt --preset cpu for 50 steps under
#                                 # KILN_CHECK, then --preset gpu until time runs out
#   benches/device_run.sh all     # tests, bench and train in one call
set -uo pipefail
cd "$(dirname "$0")/.."
step="${1:?usage: benches/device_run.sh tests|bench|train|gpt|all}"
dev=.device
out="${OUT:-device-out}"
logs="$out/logs"
mkdir -p "$logs"

unxz() { python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$@"; }
if [ ! -d "$dev/bin" ]; then python3 -c 'import tarfile, sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$dev/bin.tar.xz" "$dev"; fi

# Vulkan's loader, and NVIDIA's driver manifest where the container keeps it
for f in "$dev"/gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; fi
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
if [ -f "$egl" ]; then export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"; fi
export KILN_REQUIRE_GPU=1 KILN_DEVICE=gpu KILN_DATA="$dev/data"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv >"$logs/gpu.txt" 2>&1
cat "$logs/gpu.txt"

tests() {
    # every suite at once (16 cores), each under the same deadline; a failing suite does not
    # stop the others
    for t in "$dev"/bin/*; do
        name=$(basename "$t")
        case "$name" in bench | quickstart | mnist_* | char_gpt) continue ;; esac
        timeout "${TESTS_S:-150}" "$t" --test-threads 4 >"$logs/test-$name.txt" 2>&1 &
    done
    wait
    for f in "$logs"/test-*.txt; do
        printf '%-22s %s\n' "$(basename "$f" .txt)" "$(grep 'test result' "$f" | tail -1 || echo 'no result (timed out?)')"
        grep -E '^test .*FAILED|panicked' "$f" | head -5
    done | tee "$logs/tests-summary.txt"
}

bench() {
    if [ -f "$dev/peers/burn-peer-bench.xz" ] && [ ! -x "$dev/peers/burn-peer-bench" ]; then
        unxz "$dev/peers/burn-peer-bench.xz" "$dev/peers/burn-peer-bench"
        chmod +x "$dev/peers/burn-peer-bench"
    fi
    burn=""
    if [ -x "$dev/peers/burn-peer-bench" ]; then burn="$dev/peers/burn-peer-bench"; fi
    KILN_BENCH="$dev/bin/bench" BURN_PEER="$burn" PEERS="$dev/peers" KILN_LIMIT="${KILN_S:-130}" PEER_LIMIT="${PEER_S:-40}" \
        benches/compare.sh gpu --reps "${REPS:-20}" >"$logs/bench-gpu.md" 2>"$logs/bench-gpu.err"
    cat "$logs/bench-gpu.md"
    tail -5 "$logs/bench-gpu.err"
}

train() {
    local deadline=$(($(date +%s) + ${TRAIN_S:-80}))
    KILN_CHECK=1 timeout 30 "$dev/bin/quickstart" >"$logs/quickstart-check.txt" 2>&1
    echo "quickstart under KILN_CHECK=1: exit $?"
    tail -3 "$logs/quickstart-check.txt"
    local start left
    start=$(date +%s)
    left=$((deadline - start))
    timeout "$((left > 10 ? left : 10))" "$dev/bin/mnist_mlp" --device gpu --data "$dev/data" --epochs 10 \
        --out "$logs/mnist_mlp" >"$logs/mnist_mlp-gpu.txt" 2>&1
    echo "mnist_mlp: exit $?, $(($(date +%s) - start)) s wall-clock" | tee -a "$logs/mnist_mlp-gpu.txt"
    grep -iE 'epoch|accuracy' "$logs/mnist_mlp-gpu.txt" | tail -12
}

gpt() {
    # every GPU op of 50 training steps compared with its CPU reference
    KILN_CHECK=1 "$dev/bin/char_gpt" --device gpu --data "$dev/data" --preset cpu --max-steps 50 \
        --log-interval 10 --eval-batches 20 >"$logs/char_gpt-check.txt" 2>&1
    tail -8 "$logs/char_gpt-check.txt"
    # nanoGPT's baby GPT: its speed, and its validation loss every 250 steps until time runs out
    timeout "${GPT_SECONDS:-300}" "$dev/bin/char_gpt" --device gpu --data "$dev/data" --preset gpu \
        --log-interval 25 --eval-interval 250 --eval-batches 20 >"$logs/char_gpt-gpu.txt" 2>&1
    grep -E 'GPT|step +(1|25|50|100|250|500|1000|2000|3000|4000|5000):|validation' "$logs/char_gpt-gpu.txt"
}

case "$step" in
tests | bench | train | gpt) "$step" ;;
all)
    tests
    bench
    train
    ;;
*)
    echo "unknown step $step" >&2
    exit 2
    ;;
esac
rm -rf "$logs/mnist_mlp"
tar -C "$out" -czf "$out/logs.tar.gz" logs && rm -r "$logs"
