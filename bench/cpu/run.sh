#!/usr/bin/env bash
# bench/cpu: interpreter MIPS on the CPU-bound guests, side by side with
# qemu-system-riscv64 -icount shift=0 (TCG) on the same images, in the same run:
#   integer  guest/bench    (CoreMark-style: lists, integer matrix, sort, CRC, state machine)
#   fp       guest/fpbench  (double matrix multiply with fmadd, n-body with fdiv/fsqrt)
# Tandem runs on the interpreter and on the translator (TANDEM_CPU_ENGINE=jit).
# Prints both machines' MIPS and the ratio for each, then the two ratios side by side (so a
# regression of the integer path shows next to the FP figure).
# Usage: bench/cpu/run.sh BUILD_DIR [GUEST.elf]   (one guest: only that one is measured)
set -euo pipefail
build=$(realpath "${1:-build}")
bench=$build/bench/cpu/tandem_cpu_bench
[ -x "$bench" ] || { echo "missing $bench (build target tandem_cpu_bench)"; exit 1; }

# measure LABEL GUEST GOAL: prints the lines and sets $ratio.
measure() {
  local label=$1 guest=$2 goal=$3
  [ -f "$guest" ] || { echo "missing $guest (build target guests)"; exit 1; }
  local tandem_line tandem_mips instructions start end qemu_mips
  tandem_line=$(TANDEM_CPU_ENGINE=interp "$bench" "$guest" --repeat 2)
  echo "$label tandem: $tandem_line"
  # The translator (docs/translator.md) on the same guest, side by side.
  local jit_line jit_mips
  jit_line=$(TANDEM_CPU_ENGINE=jit "$bench" "$guest" --repeat 2)
  jit_mips=$(sed -n 's/.*mips=\([0-9.]*\).*/\1/p' <<<"$jit_line")
  echo "$label tandem --cpu jit: $jit_line"
  tandem_mips=$(sed -n 's/.*mips=\([0-9.]*\).*/\1/p' <<<"$tandem_line")
  instructions=$(sed -n 's/.*instructions=\([0-9]*\).*/\1/p' <<<"$tandem_line")
  ratio=""
  if command -v qemu-system-riscv64 >/dev/null; then
    start=$(date +%s.%N)
    timeout 600 qemu-system-riscv64 -machine virt -bios none -nographic -icount shift=0 \
      -kernel "$guest" </dev/null >/dev/null
    end=$(date +%s.%N)
    qemu_mips=$(awk -v n="$instructions" -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", n / (b - a) / 1e6 }')
    echo "$label qemu:   instructions=$instructions (same guest) wall_s=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.3f", b-a}') mips=$qemu_mips"
    ratio=$(awk -v t="$tandem_mips" -v q="$qemu_mips" 'BEGIN { printf "%.2f", t / q }')
    echo "$label ratio tandem/qemu: ${ratio}x (goal >= ${goal}x)"
    echo "$label ratio tandem-jit/qemu: $(awk -v t="$jit_mips" -v q="$qemu_mips" 'BEGIN { printf "%.2f", t / q }')x, jit/interp: $(awk -v t="$jit_mips" -v q="$tandem_mips" 'BEGIN { printf "%.2f", t / q }')x"
  fi
}

if [ $# -ge 2 ]; then
  measure guest "$2" 0.30
  exit 0
fi
measure integer "$build/guest/bench.elf" 0.30
int_ratio=$ratio
measure fp "$build/guest/fpbench.elf" 0.50
fp_ratio=$ratio
[ -n "$int_ratio" ] && echo "cpu ratios tandem/qemu: integer ${int_ratio}x, fp ${fp_ratio}x"
exit 0
