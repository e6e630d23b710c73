#!/usr/bin/env bash
# Configures and builds one flavour of quantkit. Usage: build.sh release|asan|fuzz
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-release}"
minilm="$(bash scripts/find_minilm.sh 2>/dev/null || true)"
common=(-G Ninja -DQUANTKIT_WERROR=ON "-DQUANTKIT_MINILM_DIR=${minilm}")
case "$flavour" in
  release) cmake -S . -B build/release "${common[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null ;;
  asan) cmake -S . -B build/asan "${common[@]}" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS=-O1 \
          -DQUANTKIT_SANITIZE=ON -DQUANTKIT_BUILD_BENCH=OFF >/dev/null ;;
  fuzz) CXX=clang++ cmake -S . -B build/fuzz "${common[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
          -DQUANTKIT_BUILD_FUZZ=ON -DQUANTKIT_BUILD_TESTS=OFF -DQUANTKIT_BUILD_BENCH=OFF >/dev/null ;;
  *) echo "usage: build.sh release|asan|fuzz" >&2; exit 2 ;;
esac
if [ "$flavour" = fuzz ]; then
  cmake --build build/fuzz -j "$(nproc)" --target fuzz_safetensors fuzz_idx
else
  cmake --build "build/$flavour" -j "$(nproc)"
fi
