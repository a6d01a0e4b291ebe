#!/usr/bin/env python3
"""Side-by-side VMM benchmark: Tandem vs QEMU (TCG, -icount shift=0) on the same guest.

Both machines run the same ELF, so they retire the same instructions; the count comes
from `tandem run --stats`. Each machine is timed from the outside (wall clock around the
whole process, start-up included, the same for both), best of N runs, alternating so
that drifting host load hits both alike. Tandem's peak RSS (from wait4) is compared
with the guest RAM the workload touches plus 64 MiB, the budget the project set.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time

GUEST_RAM_MIB = 128
RSS_ALLOWANCE_MIB = 64


def run_with_rss(cmd):
    """Runs cmd; returns (wall s, exit status, stdout, stderr, the child's own peak RSS KiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    # The guest's output is small (a few lines), so reading to EOF before reaping is safe.
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (wall, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"),
            usage.ru_maxrss)


def guest_touched_bytes(elf):
    """RAM the bench guest can touch: from the load address to the end of its stack."""
    nm = shutil.which("riscv64-unknown-elf-nm")
    if not nm:
        return None
    syms = subprocess.run([nm, elf], capture_output=True, text=True).stdout
    m = re.search(r"^([0-9a-f]+) \w __image_end$", syms, re.M)
    return int(m.group(1), 16) - 0x80000000 if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--guest", default=None, help="default: BUILD/guest/bench.elf")
    args = ap.parse_args()

    guest = args.guest or os.path.join(args.build, "guest", "bench.elf")
    tandem = os.path.join(args.build, "tools", "tandem")
    qemu = shutil.which("qemu-system-riscv64")
    for path, what in ((guest, "bench guest"), (tandem, "tandem binary")):
        if not os.path.exists(path):
            print(f"vmm bench: {what} not built: {path}")
            return 1
    if not qemu:
        print("vmm bench: qemu-system-riscv64 not installed")
        return 1

    tandem_cmd = [tandem, "run", "--mem", str(GUEST_RAM_MIB), "--stats", guest]
    qemu_cmd = [qemu, "-machine", "virt", "-bios", "none", "-m", f"{GUEST_RAM_MIB}M",
                "-icount", "shift=0", "-display", "none", "-monitor", "none",
                "-serial", "stdio", "-kernel", guest]

    results = {"tandem": [], "qemu": []}
    outputs = {}
    instructions = None
    tandem_rss_kib = qemu_rss_kib = 0
    for i in range(args.runs):
        for name, cmd in (("tandem", tandem_cmd), ("qemu", qemu_cmd)):
            wall, status, out, err, rss = run_with_rss(cmd)
            if status != 0:
                print(f"vmm bench: {name} run {i + 1} failed with status {status}\n{out}\n{err}")
                return 1
            results[name].append(wall)
            outputs[name] = out.replace("\r\n", "\n")
            if name == "tandem":
                tandem_rss_kib = max(tandem_rss_kib, rss)
                m = re.search(r"instructions=(\d+)", err)
                if not m:
                    print(f"vmm bench: no 'instructions=' in tandem --stats output:\n{err}")
                    return 1
                instructions = int(m.group(1))
            else:
                qemu_rss_kib = max(qemu_rss_kib, rss)
            print(f"  run {i + 1}: {name:6s} {wall:7.3f} s", flush=True)

    if outputs["tandem"] != outputs["qemu"]:
        print("vmm bench: the two machines printed different output:")
        print(f"--- qemu\n{outputs['qemu']}--- tandem\n{outputs['tandem']}")
        return 1

    best_t, best_q = min(results["tandem"]), min(results["qemu"])
    mips_t, mips_q = instructions / best_t / 1e6, instructions / best_q / 1e6
    checksum = re.search(r"checksum (0x[0-9a-f]+)", outputs["tandem"])
    print()
    print(f"guest: {os.path.basename(guest)}, {instructions:,} instructions, "
          f"checksum {checksum.group(1) if checksum else '?'} (identical on both)")
    print(f"{'machine':<34}{'best wall s':>12}{'MIPS':>10}")
    print(f"{'tandem run':<34}{best_t:>12.3f}{mips_t:>10.1f}")
    print(f"{'qemu-system-riscv64 -icount 0':<34}{best_q:>12.3f}{mips_q:>10.1f}")
    print(f"{'ratio tandem/qemu (speed)':<34}{'':>12}{mips_t / mips_q:>10.2f}")
    print()
    touched = guest_touched_bytes(guest)
    rss_mib = tandem_rss_kib / 1024
    print(f"tandem peak RSS: {rss_mib:.1f} MiB (QEMU: {qemu_rss_kib / 1024:.1f} MiB), "
          f"guest RAM {GUEST_RAM_MIB} MiB")
    if touched is not None:
        budget = touched / 2**20 + RSS_ALLOWANCE_MIB
        verdict = "within" if rss_mib <= budget else "OVER"
        print(f"guest RAM touched: {touched / 2**20:.2f} MiB; budget touched + "
              f"{RSS_ALLOWANCE_MIB} MiB = {budget:.1f} MiB: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
