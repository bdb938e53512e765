#!/usr/bin/env bash
# Packs into .device/ (git-ignored) what a GPU machine with no Rust toolchain and no internet
# needs to run kiln there: release builds of the benchmark program, the GPU test suites and the
# MNIST and char-GPT examples, the Vulkan loader package, the peer harnesses, MNIST and
# tiny-shakespeare. benches/device_run.sh
# runs them on that machine. Run this here, then carry `.device` (under 64 MiB).
#
#   BURN_PEER=/path/to/burn-peer-bench benches/device_pack.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=.device
data="${KILN_DATA:-../shared/data}"
peers="${PEERS:-../shared/peers}"
rm -rf "$out"
mkdir -p "$out/bin" "$out/gl" "$out/data/mnist" "$out/data/tinyshakespeare" "$out/peers"

examples=(bench quickstart mnist_mlp mnist_lenet char_gpt)
cargo build --release $(printf -- '--example %s ' "${examples[@]}")
for e in "${examples[@]}"; do cp "target/release/examples/$e" "$out/bin/"; done
# the suites that run on a GPU
gpu_tests=(parity device check backend attention recurrent transformer gpt models_checked fusion subgroups optim
    f16 memory memory_peak cnn_models random bad_indices errors deferred)
# the test binaries, found from cargo's "Executable tests/x.rs (target/release/deps/x-hash)" lines
cargo test --release --no-run $(printf -- '--test %s ' "${gpu_tests[@]}") 2>&1 |
    sed -n 's/.*Executable tests\/\([a-z0-9_]*\)\.rs (\(.*\))/\1 \2/p' |
    while read -r name path; do cp "$path" "$out/bin/$name"; done
strip "$out"/bin/*
XZ_OPT=-9T2 tar -C "$out" -cJf "$out/bin.tar.xz" bin # the carry limit is 64 MiB
rm -r "$out/bin"

cp "$peers/torch_bench.py" "$out/peers/"
if [ -n "${BURN_PEER:-}" ]; then xz -T2 -9 -c "$BURN_PEER" >"$out/peers/burn-peer-bench.xz"; fi
cp "$data"/mnist/*.gz "$out/data/mnist/"
cp "$data"/tinyshakespeare/input.txt "$out/data/tinyshakespeare/"

# Vulkan's loader (libvulkan1) for amd64, which the device machine lacks, and GLVND, which
# NVIDIA's Vulkan driver (libGLX_nvidia) needs to create an instance
lists=/tmp/apt-amd64-lists
mkdir -p "$lists/partial"
apt=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists="$lists")
apt-get "${apt[@]}" update -qq
(cd "$out/gl" && apt-get "${apt[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 -qq)

du -sh "$out"
ls -la "$out" "$out/peers"
