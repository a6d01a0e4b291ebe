#!/usr/bin/env python3
"""make demo, Linux part: boots the Linux guest (build/guest/linux) on `tandem run` under
OpenSBI, shows the console as it boots, then talks to the kv service /init runs: a few
commands typed once the banner is up, QUIT powers the guest off. Usage: demo_linux.py BUILD"""
import os
import subprocess
import sys
import tempfile
import time

OPENSBI = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin"
COMMANDS = ["SET colour blue", "GET colour", "COUNT", "SYNC", "QUIT"]
TIMEOUT_S = 120


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    images = os.path.join(build, "guest", "linux")
    kernel, initrd = os.path.join(images, "Image"), os.path.join(images, "initramfs.cpio")
    for path in (kernel, initrd, OPENSBI):
        if not os.path.exists(path):
            print(f"(skipped: {path} missing; `make linux-guest` builds the image)")
            return 0
    with tempfile.TemporaryDirectory(prefix="tandem-demo-") as tmp:
        disk = os.path.join(tmp, "kv.img")
        with open(disk, "wb") as f:
            f.truncate(1 << 20)
        cmd = [os.path.join(build, "tools", "tandem"), "run", "--stats", "--bios", OPENSBI,
               "--kernel", kernel, "--initrd", initrd, "--append", "console=ttyS0",
               "--disk", disk]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        deadline = time.monotonic() + TIMEOUT_S
        try:
            pending, ready = list(COMMANDS), False
            for raw in proc.stdout:  # one console line at a time
                print(raw.decode("latin-1").rstrip("\r\n"), flush=True)
                if time.monotonic() > deadline:
                    print(f"(demo: no power-off within {TIMEOUT_S} s)")
                    break
                # Type only once the banner is up; then each reply line asks for the next.
                ready = ready or raw.startswith(b"tandem-kv ready")
                if ready and pending:
                    command = pending.pop(0)
                    print(f"> {command}", flush=True)
                    proc.stdin.write((command + "\n").encode())
                    proc.stdin.flush()
            status = proc.wait(timeout=30)
            stats = proc.stderr.read().decode(errors="replace").strip().splitlines()
            print(f"(tandem exited with status {status}; {stats[-1] if stats else 'no stats'})")
            return 0 if status == 0 else 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    sys.exit(main())
