#!/usr/bin/env bash
# Linux guest benchmark: boot to userspace (the kv banner from /init) of the same kernel Image
# and initramfs on Tandem and on qemu-system-riscv64 -icount shift=0, best of N each,
# alternating, in the same run. Usage: bench/linux/run.sh BUILD_DIR [RUNS]
set -euo pipefail
build=$(realpath "${1:-build}")
runs=${2:-3}
here=$(dirname "$(realpath "$0")")
exec python3 "$here/measure.py" --build "$build" --runs "$runs"
