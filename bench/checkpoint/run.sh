#!/usr/bin/env bash
# checkpoint suite: full checkpoint of a guest that touched 64 MiB (lz4, zstd, raw side by
# side), apply, a 1% incremental, and the stream of a big guest that touched little.
set -euo pipefail
build=$(realpath "${1:-build}")
bin="$build/bench/checkpoint/checkpoint_bench"
if [ ! -x "$bin" ]; then
  cmake --build "$build" --target checkpoint_bench >/dev/null
fi
"$bin" "${@:2}"
