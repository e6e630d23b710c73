#!/usr/bin/env bash
# Sets up, then builds and runs every test: the release build (-Werror), the same suite under
# AddressSanitizer + UndefinedBehaviorSanitizer, and the file-parser fuzzers for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs="$(nproc)"
# ctest -j runs several tests at once, each an OpenMP process with a thread per core. Waiting
# threads that spin (the default) take the cores from the other process at every barrier of the
# many small parallel regions: the release suite ran 161 s that way and 32 s with passive waits.
export OMP_WAIT_POLICY=passive

echo "== release build + tests"
bash scripts/build.sh release
ctest --test-dir build/release --output-on-failure -j "$jobs"

echo "== ASan + UBSan build + tests"
bash scripts/build.sh asan
# The whole-data-set runs (perplexity over 200 stories, the 10,000-image Fashion-MNIST CNN) take
# minutes under the sanitizers and add no code path the unit tests do not cover there.
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build/asan --output-on-failure -j "$jobs" -E "perplexity|fashion_cnn"

echo "== fuzzing the safetensors reader for ${QUANTKIT_FUZZ_SECONDS:=60} s"
bash scripts/build.sh fuzz
mkdir -p build/fuzz/corpus
./build/fuzz/fuzz/fuzz_safetensors -max_total_time="$QUANTKIT_FUZZ_SECONDS" -max_len=65536 -rss_limit_mb=2048 \
  build/fuzz/corpus fuzz/corpus 2>&1 | tail -n 3
echo "== fuzzing the IDX, .npy and tokenizer readers for 20 s"
mkdir -p build/fuzz/corpus_idx
./build/fuzz/fuzz/fuzz_idx -max_total_time=20 -max_len=4096 -rss_limit_mb=2048 build/fuzz/corpus_idx 2>&1 | tail -n 3
echo "fuzz: no findings in ${QUANTKIT_FUZZ_SECONDS} s + 20 s"
