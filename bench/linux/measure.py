#!/usr/bin/env python3
"""Boot-to-userspace benchmark of the Linux guest: Tandem vs QEMU (TCG, -icount shift=0).

Both machines boot the same OpenSBI + kernel Image + initramfs with the same command line.
Each boot is timed from the outside, from starting the process to the kv banner on the
console (the first line /init prints), start-up included alike; then QUIT powers the guest
off. Best of N runs, alternating, so that drifting host load hits both alike. The
instruction count comes from `tandem run --stats` at power-off (boot, one QUIT, shutdown:
the QUIT and shutdown add well under 1% to the boot).
"""
import argparse
import os
import re
import select
import shutil
import subprocess
import sys
import time

GUEST_RAM_MIB = 128
OPENSBI = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin"
APPEND = "console=ttyS0 printk.time=0"
BANNER = b"tandem-kv ready"
TARGET_RATIO = 0.3


def boot_once(cmd, timeout):
    """(seconds to the banner, exit status, stderr text)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    seen, to_banner = b"", None
    try:
        while to_banner is None:
            left = timeout - (time.perf_counter() - start)
            if left <= 0:
                raise RuntimeError(f"no banner within {timeout}s: {seen[-500:]!r}")
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if not ready:
                continue
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                raise RuntimeError(f"console closed before the banner: {seen[-500:]!r}")
            seen += data
            if BANNER in seen:
                to_banner = time.perf_counter() - start
        proc.stdin.write(b"QUIT\n")
        proc.stdin.flush()
        proc.stdout.read()
        err = proc.stderr.read().decode(errors="replace")
        status = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return to_banner, status, err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=600)
    args = ap.parse_args()

    images = os.path.join(args.build, "guest", "linux")
    kernel, initrd = os.path.join(images, "Image"), os.path.join(images, "initramfs.cpio")
    tandem = os.path.join(args.build, "tools", "tandem")
    qemu = shutil.which("qemu-system-riscv64")
    for path, what in ((kernel, "kernel Image (make linux-guest)"),
                       (initrd, "initramfs (make linux-guest)"), (tandem, "tandem binary"),
                       (OPENSBI, "OpenSBI firmware (package opensbi)")):
        if not os.path.exists(path):
            print(f"linux bench: {what} missing: {path}")
            return 1
    if not qemu:
        print("linux bench: qemu-system-riscv64 not installed")
        return 1
    helptext = subprocess.run([tandem, "run", "--help"], capture_output=True, text=True).stdout
    if "--kernel" not in helptext:
        print("linux bench: SKIP: this tandem cannot boot Linux (no `run --kernel`)")
        return 0

    tandem_cmd = [tandem, "run", "--mem", str(GUEST_RAM_MIB), "--stats", "--bios", OPENSBI,
                  "--kernel", kernel, "--initrd", initrd, "--append", APPEND]
    qemu_cmd = [qemu, "-M", "virt", "-cpu", "rv64,f=false,d=false,h=false,sstc=false", "-m", f"{GUEST_RAM_MIB}M",
                "-bios", OPENSBI, "-kernel", kernel, "-initrd", initrd, "-append", APPEND,
                "-icount", "shift=0", "-display", "none", "-monitor", "none",
                "-serial", "stdio"]

    best = {"tandem": float("inf"), "qemu": float("inf")}
    instructions = None
    for i in range(args.runs):
        for name, cmd in (("tandem", tandem_cmd), ("qemu", qemu_cmd)):
            try:
                seconds, status, err = boot_once(cmd, args.timeout)
            except RuntimeError as e:
                print(f"linux bench: {name} run {i + 1}: {e}")
                return 1
            if status != 0:
                print(f"linux bench: {name} run {i + 1} exited {status} after QUIT\n{err}")
                return 1
            if name == "tandem":
                m = re.search(r"instructions=(\d+)", err)
                if m:
                    instructions = int(m.group(1))
            best[name] = min(best[name], seconds)
            print(f"  run {i + 1}: {name:6s} boot to userspace {seconds:7.3f} s", flush=True)

    ratio = best["qemu"] / best["tandem"]
    print()
    print(f"kernel {os.path.getsize(kernel):,} bytes, initramfs {os.path.getsize(initrd):,} "
          f"bytes, {GUEST_RAM_MIB} MiB RAM, append '{APPEND}'")
    if instructions:
        print(f"instructions to userspace (to power-off after QUIT): {instructions:,}")
    print(f"{'machine':<34}{'best boot s':>12}")
    print(f"{'tandem run':<34}{best['tandem']:>12.3f}")
    print(f"{'qemu-system-riscv64 -icount 0':<34}{best['qemu']:>12.3f}")
    verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
    print(f"{'ratio (qemu time / tandem time)':<34}{ratio:>12.2f}  "
          f"({verdict} the {TARGET_RATIO} target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
