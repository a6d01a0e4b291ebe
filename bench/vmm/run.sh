#!/usr/bin/env bash
# VMM benchmark: the `bench` guest (~2.5 billion RV64 instructions) on Tandem and on
# qemu-system-riscv64 -icount shift=0, best of 3 each, alternating, in the same run. First,
# the disk content hash per audit: the old whole-image hash against the block-hash cache.
# Usage: bench/vmm/run.sh BUILD_DIR [RUNS]
set -euo pipefail
build=$(realpath "${1:-build}")
runs=${2:-3}
here=$(dirname "$(realpath "$0")")
disk_bench="$build/bench/vmm/disk_hash_bench"
if [ ! -x "$disk_bench" ]; then
  cmake --build "$build" --target disk_hash_bench >/dev/null
fi
"$disk_bench"
exec python3 "$here/measure.py" --build "$build" --runs "$runs"
