#!/usr/bin/env bash
# The main job: set up, build, and quantize the default model (all-MiniLM-L6-v2) to int8
# per-channel and int4 with groups of 32, printing the per-tensor tables.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh release >/dev/null
model="$(bash scripts/find_minilm.sh)"
mkdir -p out
./build/release/quantkit quantize "$model" -o out/minilm-int8.safetensors --weights int8
./build/release/quantkit quantize "$model" -o out/minilm-int4-g32.safetensors --weights int4 --group-size 32
