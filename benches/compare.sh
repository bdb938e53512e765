#!/usr/bin/env bash
# Runs kiln's benchmark program and the peer harnesses one after another on this machine and
# prints one markdown table, for BENCHMARKS.md.
#
#   benches/compare.sh cpu --small   # kiln, Burn flex and ndarray, NumPy's BLAS (and PyTorch, with its
#                                    # nn.LSTM and linear-layer rows from benches/peers/, if installed)
#   benches/compare.sh cpu           # full shapes
#   benches/compare.sh gpu           # kiln, Burn wgpu, PyTorch CUDA with TF32 off and on
#
# KILN_BENCH: a built `bench` example (default: built here with cargo); BURN_PEER: a built
# `burn-peer-bench` (rows skipped without it); PEERS: the harness folder (default ../shared/peers);
# KILN_LIMIT, PEER_LIMIT: seconds each program may run (a lease's time box), rows printed so far kept.
set -euo pipefail
cd "$(dirname "$0")/.."
device="${1:?usage: benches/compare.sh cpu|gpu [--small] [--reps N]}"
shift
peers="${PEERS:-../shared/peers}"
python="${PYTHON:-python3}"
if [ -z "${KILN_BENCH:-}" ]; then
    cargo build --release --example bench -q
    KILN_BENCH=target/release/examples/bench
fi

limited() {
    local limit="$1"
    shift
    if [ -n "$limit" ]; then timeout "$limit" "$@"; else "$@"; fi
}
# Peer rows have one column fewer (no fraction of ceiling).
peer() { limited "${PEER_LIMIT:-}" "$@" | grep '^|' | sed 's/$/ - |/' || echo "<!-- failed or cut short: $* -->"; }

echo "Machine: $(uname -m), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "Date: $(date -u +%Y-%m-%d)"
echo
kiln="$(mktemp)"
trap 'rm -f "$kiln"' EXIT
limited "${KILN_LIMIT:-}" "$KILN_BENCH" --device "$device" "$@" >"$kiln" || echo "<!-- kiln's benchmark failed or was cut short -->"
sed -n '/^device:/,/^ceilings:/p' "$kiln"
echo
echo "| framework | device | op | shape | ms | rate | of ceiling |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
grep '^| kiln' "$kiln" || true
case "$device" in
cpu)
    if [ -n "${BURN_PEER:-}" ]; then
        peer "$BURN_PEER" --device flex "$@"
        peer "$BURN_PEER" --device ndarray "$@"
    fi
    peer "$python" "$peers/torch_bench.py" --numpy
    if "$python" -c 'import torch' 2>/dev/null; then
        peer "$python" "$peers/torch_bench.py" --device cpu "$@"
        peer "$python" benches/peers/torch_lstm.py
        peer "$python" benches/peers/torch_linear.py
    fi
    ;;
gpu*)
    if [ -n "${BURN_PEER:-}" ]; then peer "$BURN_PEER" --device wgpu "$@"; fi
    peer "$python" "$peers/torch_bench.py" --device cuda "$@"
    peer "$python" "$peers/torch_bench.py" --device cuda --tf32 "$@"
    ;;
esac
