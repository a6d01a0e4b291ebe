#!/usr/bin/env bash
# bench/cpu: interpreter MIPS on the CPU-bound guest (guest/bench), side by side with
# qemu-system-riscv64 -icount shift=0 (TCG) on the same image. Prints both and the ratio.
# Usage: bench/cpu/run.sh BUILD_DIR [GUEST.elf]
set -euo pipefail
build=$(realpath "${1:-build}")
guest=${2:-$build/guest/bench.elf}
bench=$build/bench/cpu/tandem_cpu_bench
[ -x "$bench" ] || { echo "missing $bench (build target tandem_cpu_bench)"; exit 1; }
[ -f "$guest" ] || { echo "missing $guest (build target guests)"; exit 1; }

tandem_line=$("$bench" "$guest" --repeat 2)
echo "tandem: $tandem_line"
tandem_mips=$(sed -n 's/.*mips=\([0-9.]*\).*/\1/p' <<<"$tandem_line")
instructions=$(sed -n 's/.*instructions=\([0-9]*\).*/\1/p' <<<"$tandem_line")

if command -v qemu-system-riscv64 >/dev/null; then
  start=$(date +%s.%N)
  timeout 600 qemu-system-riscv64 -machine virt -bios none -nographic -icount shift=0 \
    -kernel "$guest" </dev/null >/dev/null
  end=$(date +%s.%N)
  qemu_mips=$(awk -v n="$instructions" -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", n / (b - a) / 1e6 }')
  echo "qemu:   instructions=$instructions (same guest) wall_s=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.3f", b-a}') mips=$qemu_mips"
  awk -v t="$tandem_mips" -v q="$qemu_mips" 'BEGIN { printf "ratio tandem/qemu: %.2fx (goal >= 0.30x)\n", t / q }'
fi
