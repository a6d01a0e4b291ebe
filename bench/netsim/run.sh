#!/usr/bin/env bash
# netsim suite: proxy added latency (p50/p99, no faults) and bulk TCP throughput through the
# proxy vs direct loopback, measured side by side in one run.
set -euo pipefail
build=$(realpath "${1:-build}")
bin="$build/bench/netsim/netsim_bench"
if [ ! -x "$bin" ]; then
  cmake --build "$build" --target netsim_bench >/dev/null
fi
"$bin" "${@:2}"
