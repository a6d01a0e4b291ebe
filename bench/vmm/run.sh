#!/usr/bin/env bash
# VMM benchmark: the `bench` guest (~2.5 billion RV64 instructions) on Tandem and on
# qemu-system-riscv64 -icount shift=0, best of 3 each, alternating, in the same run.
# Usage: bench/vmm/run.sh BUILD_DIR [RUNS]
set -euo pipefail
build=$(realpath "${1:-build}")
runs=${2:-3}
here=$(dirname "$(realpath "$0")")
exec python3 "$here/measure.py" --build "$build" --runs "$runs"
