#!/usr/bin/env bash
# Debian guest benchmark (docs/debian-guest.md, "Figures"): boot to the shell prompt and
# redis-benchmark inside the guest, Tandem vs qemu-system-riscv64 -icount shift=0, same kernel
# and image, alternating, in the same run. Usage: bench/debian/run.sh BUILD_DIR [RUNS]
set -euo pipefail
build=$(realpath "${1:-build}")
runs=${2:-3}
here=$(dirname "$(realpath "$0")")
exec python3 "$here/measure.py" --build "$build" --runs "$runs"
