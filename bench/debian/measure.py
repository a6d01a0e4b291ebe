#!/usr/bin/env python3
"""Debian guest benchmark: Tandem vs QEMU (TCG, -icount shift=0), same OpenSBI, kernel
(guest/linux/debian.config), command line and root image (a fresh copy per boot).

Per run and machine, one boot with tandem.services=redis:
  boot     seconds from starting the process to the shell prompt (after init's ready line,
           so Redis is up), timed from the outside, start-up included alike;
  redis    `redis-benchmark -n N -t set,get -q` typed at the prompt: requests/s from the host's
           clock (2N requests / seconds from typing the command to its end marker), and the
           figures redis-benchmark prints itself (guest clock: on Tandem and on QEMU -icount the
           guest's time follows its instruction count, not the host's clock, so those
           say how many instructions a request costs rather than how fast the machine runs);
  then `poweroff`; Tandem's --stats gives the instructions executed (boot + benchmark +
  power-off, reported separately for a boot-only run at the end).
Runs alternate Tandem and QEMU so drifting host load hits both alike; the ratio of each run
is QEMU's time / Tandem's time (or Tandem's requests/s / QEMU's), min/median/max over the runs.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "guests"))
from debian_guest_test import (APPEND, MEM_MIB, OPENSBI, PROMPT, QEMU_CPU, READY,  # noqa: E402
                               Console, Failure, power_off, sh, wait_for)

BOOT_TARGET = 0.5
RPS = re.compile(r"(SET|GET): ([\d.]+) requests per second")


def commands(tandem, qemu, kernel, disk):
    append = APPEND + " tandem.services=redis"
    return {
        "tandem": [tandem, "run", "--mem", str(MEM_MIB), "--stats", "--bios", OPENSBI,
                   "--kernel", kernel, "--append", append, "--disk", disk],
        "qemu": [qemu, "-M", "virt", "-cpu", QEMU_CPU, "-m", f"{MEM_MIB}M", "-bios", OPENSBI,
                 "-kernel", kernel, "-append", append, "-icount", "shift=0",
                 "-display", "none", "-monitor", "none", "-serial", "stdio",
                 "-global", "virtio-mmio.force-legacy=false",
                 "-drive", f"file={disk},if=none,format=raw,id=d0",
                 "-device", "virtio-blk-device,drive=d0", "-device", "virtio-rng-device"],
    }


def one_boot(cmd, label, requests, timeout, redis):
    """(seconds to the prompt, host requests/s or None, {SET,GET: guest rps}, instructions)."""
    start = time.perf_counter()
    console = Console(cmd, label)
    try:
        wait_for(console, re.compile(re.escape(READY) + r"[^\n]*\n"), timeout, "init ready line")
        wait_for(console, PROMPT, timeout, "shell prompt")
        boot = time.perf_counter() - start
        host_rps, guest = None, {}
        if redis:
            sh(console, "stty cols 1000 rows 50")
            t0 = time.perf_counter()
            out = sh(console, f"redis-benchmark -n {requests} -t set,get -q", timeout=timeout)
            host_rps = 2 * requests / (time.perf_counter() - t0)
            guest = {k: float(v) for k, v in RPS.findall(out)}
            if set(guest) != {"SET", "GET"}:
                raise Failure(f"{label}: redis-benchmark printed no SET/GET figures:\n{out}")
        power_off(console, timeout)
    finally:
        console.kill()
    m = re.search(r"instructions=(\d+)", console.stderr.decode(errors="replace"))
    return boot, host_rps, guest, int(m.group(1)) if m else None


def spread(values, fmt):
    return "  ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--requests", type=int, default=20000, help="redis-benchmark -n")
    ap.add_argument("--timeout", type=int, default=1200)
    args = ap.parse_args()

    images = os.path.join(args.build, "guest", "debian")
    kernel, image = os.path.join(images, "kernel", "Image"), os.path.join(images, "debian.img")
    tandem = os.path.join(args.build, "tools", "tandem")
    qemu = shutil.which("qemu-system-riscv64")
    for path, what in ((kernel, "kernel Image (make debian-guest)"),
                       (image, "root image (make debian-guest)"), (tandem, "tandem binary"),
                       (OPENSBI, "OpenSBI firmware (package opensbi)")):
        if not os.path.exists(path):
            print(f"debian bench: SKIP: {what} missing: {path}")
            return 0
    if not qemu:
        print("debian bench: SKIP: qemu-system-riscv64 not installed")
        return 0

    results = {"tandem": [], "qemu": []}
    with tempfile.TemporaryDirectory(prefix="tandem-debian-bench-") as tmp:
        def boot(name, run, redis=True):
            disk = os.path.join(tmp, f"{name}.img")
            subprocess.run(["cp", "--sparse=always", image, disk], check=True)
            return one_boot(commands(tandem, qemu, kernel, disk)[name],
                            f"{name} run {run}", args.requests, args.timeout, redis)

        try:
            for i in range(1, args.runs + 1):
                for name in ("tandem", "qemu"):
                    r = boot(name, i)
                    results[name].append(r)
                    print(f"  run {i}: {name:6s} boot to prompt {r[0]:7.2f} s, redis-benchmark "
                          f"{r[1]:8.0f} req/s (host clock); guest clock SET {r[2]['SET']:.0f} "
                          f"GET {r[2]['GET']:.0f}", flush=True)
            boot_only = boot("tandem", "boot-only", redis=False)
        except Failure as e:
            print(f"debian bench: FAIL: {e}")
            return 1

    t, q = results["tandem"], results["qemu"]
    boot_ratio = [qq[0] / tt[0] for tt, qq in zip(t, q)]
    rps_ratio = [tt[1] / qq[1] for tt, qq in zip(t, q)]
    print()
    print(f"Debian guest: kernel {os.path.getsize(kernel):,} bytes, {MEM_MIB} MiB RAM, "
          f"tandem.services=redis; redis-benchmark -n {args.requests} -t set,get -q "
          f"(appendfsync always); {args.runs} runs, figures min / median / max; "
          f"host load {os.getloadavg()[0]:.1f}")
    print(f"instructions to the prompt (boot + poweroff, no benchmark): {boot_only[3]:,}")
    print(f"{'':<38}{'min':>10}{'median':>10}{'max':>10}")
    print(f"{'tandem boot to prompt (s)':<38}{spread([r[0] for r in t], '{:>8.2f}')}")
    print(f"{'qemu -icount 0 boot to prompt (s)':<38}{spread([r[0] for r in q], '{:>8.2f}')}")
    print(f"{'boot ratio (qemu s / tandem s)':<38}{spread(boot_ratio, '{:>8.2f}')}"
          f"   ({'meets' if statistics.median(boot_ratio) >= BOOT_TARGET else 'BELOW'} the "
          f"{BOOT_TARGET} target)")
    print(f"{'tandem redis req/s (host clock)':<38}{spread([r[1] for r in t], '{:>8.0f}')}")
    print(f"{'qemu redis req/s (host clock)':<38}{spread([r[1] for r in q], '{:>8.0f}')}")
    print(f"{'redis ratio (tandem / qemu req/s)':<38}{spread(rps_ratio, '{:>8.2f}')}")
    for op in ("SET", "GET"):
        print(f"{'guest clock ' + op + ' req/s tandem / qemu':<38}"
              f"{spread([r[2][op] for r in t], '{:>8.0f}')}  /"
              f"{spread([r[2][op] for r in q], '{:>8.0f}')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
