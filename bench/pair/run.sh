#!/usr/bin/env bash
# pair suite: the live pair (tandemd primary + secondary on 127.0.0.1) against a standalone
# tandemd in the same run: kv throughput, output-commit latency added, log bandwidth,
# kill -9 failover time, a CPU-bound guest's instruction rate, and the initial sync of a
# 256 MiB guest full of incompressible data. See measure.py.
set -euo pipefail
build=$(realpath "${1:-build}")
here=$(dirname "$(realpath "$0")")
if [ ! -x "$build/tools/tandemd" ] || [ ! -x "$build/tools/tandemctl" ] || [ ! -e "$build/guest/kv.elf" ] \
   || [ ! -e "$build/guest/bench_forever.elf" ] || [ ! -e "$build/guest/memfill.elf" ]; then
  cmake --build "$build" --target tandemd tandemctl guests >/dev/null
fi
python3 "$here/measure.py" "$build" "${@:2}"
