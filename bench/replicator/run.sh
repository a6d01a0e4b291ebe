#!/usr/bin/env bash
# replicator suite: the replication link's round trip (p50/p99) and throughput on loopback,
# side by side with a raw TCP ping-pong in the same run.
set -euo pipefail
build=$(realpath "${1:-build}")
bin="$build/bench/replicator/link_bench"
if [ ! -x "$bin" ]; then
  cmake --build "$build" --target link_bench >/dev/null
fi
"$bin" "${@:2}"
