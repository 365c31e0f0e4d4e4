#!/usr/bin/env bash
# Shared helpers for the llama.cpp side-by-side peer (../shared/peers): locate it, install
# node-llama-cpp's prebuilt CPU build from npm once into build/peers/llamacpp.
# Source this file; it defines PEERS_DIR, LLAMACPP_DIR and ensure_llamacpp.
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
PEERS_DIR="${PEERS_DIR:-$ROOT/../shared/peers}"
LLAMACPP_DIR="${LLAMACPP_DIR:-$ROOT/build/peers/llamacpp}"
ensure_llamacpp() {
  if [ ! -d "$LLAMACPP_DIR/node_modules/node-llama-cpp" ]; then
    mkdir -p "$LLAMACPP_DIR"
    (cd "$LLAMACPP_DIR" && npm init -y >/dev/null &&
      npm install --no-audit --no-fund --loglevel=error --omit=optional \
        node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1 >/dev/null)
  fi
}
