#!/usr/bin/env bash
# fencing suite: one arbiter call's latency (p50/p99), side by side with the bare operation
# it is built on (TCP connect + round trip, an O_DSYNC block write, fork+exec of /bin/true).
set -euo pipefail
build=$(realpath "${1:-build}")
bin="$build/bench/fencing/arbiter_bench"
if [ ! -x "$bin" ]; then
  cmake --build "$build" --target arbiter_bench >/dev/null
fi
"$bin" "${@:2}"
