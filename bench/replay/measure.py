#!/usr/bin/env python3
"""Measures record/replay costs side by side (see run.sh)."""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

build = sys.argv[1]
tandem = os.path.join(build, "tools", "tandem")
guests = os.path.join(build, "guest")
tmp = tempfile.mkdtemp(prefix="tandem_bench_rr_")


def wall(args):
    t = time.perf_counter()
    r = subprocess.run([tandem] + args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, check=True)
    return time.perf_counter() - t, r.stderr.decode()


bench = os.path.join(guests, "bench.elf")
log = os.path.join(tmp, "bench.log")
best = {"run": 1e9, "record": 1e9, "replay": 1e9}
instructions = 0
for _ in range(3):  # alternate, so drift of a shared machine hits all three alike
    t, err = wall(["run", "--stats", bench])
    best["run"] = min(best["run"], t)
    instructions = int(re.search(r"instructions=(\d+)", err).group(1))
    t, _ = wall(["record", "--log", log, "--time", "virtual", bench])
    best["record"] = min(best["record"], t)
    t, _ = wall(["replay", "--log", log, bench])
    best["replay"] = min(best["replay"], t)
mips = {k: instructions / v / 1e6 for k, v in best.items()}
print(f"{'mode':<8} {'best s':>8} {'MIPS':>8} {'vs run':>8}")
for k in ("run", "record", "replay"):
    print(f"{k:<8} {best[k]:>8.3f} {mips[k]:>8.1f} {best['run'] / best[k]:>8.3f}")
print(f"bench log: {os.path.getsize(log)} bytes for {instructions} instructions (audits every 10M)")

# Idle guest, 1 kHz timer, wall time: only time records and audits.
idle_log = os.path.join(tmp, "idle.log")
t, err = wall(["record", "--log", idle_log, "--time", "wall", "--stats", os.path.join(guests, "idle1k.elf")])
size = os.path.getsize(idle_log)
print(f"idle1k (1 kHz timer, wall time): {size} bytes in {t:.2f} s = {size * 8 / t / 1e6:.3f} Mbit/s "
      f"(VMware FT's idle RHEL5 anchor: 1.43 Mbit/s)")

# Key-value guest under a scripted client over the TCP console.
kv_log = os.path.join(tmp, "kv.log")
disk = os.path.join(tmp, "kv.img")
with open(disk, "wb") as f:
    f.truncate(1 << 20)
proc = subprocess.Popen([tandem, "record", "--log", kv_log, "--time", "wall", "--console", "tcp:127.0.0.1:0",
                         "--disk", disk, os.path.join(guests, "kv.elf")],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
port = None
while port is None:
    line = proc.stderr.readline().decode()
    m = re.search(r"tcp:127\.0\.0\.1:(\d+)", line)
    if m:
        port = int(m.group(1))
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rwb")
f.readline()
n = 2000
t0 = time.perf_counter()
for i in range(n):
    f.write(b"SET key%d value-%d\n" % (i % 500, i))
    f.flush()
    f.readline()
f.write(b"QUIT\n")
f.flush()
f.readline()
elapsed = time.perf_counter() - t0
proc.wait(timeout=60)
size = os.path.getsize(kv_log)
print(f"kv ({n} SETs, one client): {size} bytes in {elapsed:.2f} s = {size * 8 / elapsed / 1e6:.3f} Mbit/s, "
      f"{n / elapsed:.0f} requests/s")
