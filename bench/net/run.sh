#!/usr/bin/env bash
# net suite: sealing (encrypt + tag) and opening throughput of one core for the link's frame
# sizes, ChaCha20-Poly1305 and AES-256-GCM side by side in the same run (docs/security.md).
set -euo pipefail
build=$(realpath "${1:-build}")
bin="$build/bench/net/aead_bench"
if [ ! -x "$bin" ]; then
  cmake --build "$build" --target aead_bench >/dev/null
fi
"$bin" "${@:2}"
