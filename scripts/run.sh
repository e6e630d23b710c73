#!/usr/bin/env bash
# The main job: set up, build, quantize the default model (all-MiniLM-L6-v2) to int8 per-channel
# and int4 with groups of 32 (per-tensor tables), then compare float, W8A8 dynamic, int8 and
# int4 g32 weight-only end to end: size, cosine of the sentence embeddings to float,
# sentences/s and speed-up at batch 32.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh release >/dev/null
model="$(bash scripts/find_minilm.sh)"
mkdir -p out
./build/release/quantkit quantize "$model" -o out/minilm-int8.safetensors --weights int8
./build/release/quantkit quantize "$model" -o out/minilm-int4-g32.safetensors --weights int4 --group-size 32
./build/release/quantkit bench bert "$model" --sentences tests/data/minilm_sentences.txt --batch 32
