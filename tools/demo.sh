#!/usr/bin/env bash
# make demo: run guests on Tandem, and the same guest on QEMU for comparison.
set -euo pipefail
build=$(realpath "${1:-build}")
tandem="$build/tools/tandem"
guests="$build/guest"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "tandem run hello.elf  (RV64 guest on Tandem's deterministic VMM)"
"$tandem" run --stats --state-hash "$guests/hello.elf"

step "tandem run isa.elf  (ISA self-check suite)"
"$tandem" run --stats "$guests/isa.elf" | tail -n 3

step "determinism: the same guest twice gives the same state hash at the same icount"
for i in 1 2; do
  "$tandem" run --max-instructions 2000000 --state-hash "$guests/bench_small.elf" 2>&1 >/dev/null | grep -iE 'hash|stopped' || true
done

step "the same hello.elf on qemu-system-riscv64 -machine virt -bios none -icount shift=0"
timeout 20 qemu-system-riscv64 -machine virt -bios none -nographic -icount shift=0 \
  -kernel "$guests/hello.elf" </dev/null || true

step "a protected pair: tandemd primary + secondary, kill -9 the primary, the key-value guest answers on"
python3 "$(dirname "$0")/demo_pair.py" "$build"

step "Linux 6.1 boots on Tandem under OpenSBI; its /init is the key-value service"
python3 "$(dirname "$0")/demo_linux.py" "$build"
