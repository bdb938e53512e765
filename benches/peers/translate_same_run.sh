#!/bin/bash
# One epoch of each translation model, kiln then PyTorch (benches/peers/torch_translate.py, 2
# threads), with the same data pipeline and recipe, one after the other on this machine: the
# same-run comparison the translation figures in README.md and BENCHMARKS.md come from. Run it on
# a quiet machine.
#
#     bash benches/peers/translate_same_run.sh DATA_DIR PYTHON [OUT_DIR]
set -euo pipefail
data=${1:?DATA_DIR (the shared datasets)}
python=${2:?PYTHON (with torch and safetensors)}
out=${3:-runs/translate-same-run}
cargo build --release --example translate
for model in transformer gru-attn; do
  echo "=== kiln $model $(date -u)"
  target/release/examples/translate --model "$model" --device cpu --data "$data" --epochs 1 --quiet --out "$out/$model"
  echo "=== torch $model $(date -u)"
  "$python" benches/peers/torch_translate.py "$data" --model "$model" --epochs 1
done
