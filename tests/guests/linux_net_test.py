#!/usr/bin/env python3
"""The Linux kv guest on the network (docs/networking.md): `tandem run|record --net user`
with the guest's kv port 5555 forwarded to a free port on 127.0.0.1.

Scenarios (--scenario, one CTest test each):
  run     a TCP client does SET/GET/DEL/COUNT through the forwarded port with random pauses;
          the console answers at the same time; QUIT over TCP answers BYE and powers the
          guest off (tandem exits 0).
  record  the same session under `tandem record --time wall`; `tandem replay` without any
          network (the frames come from the log) prints the same console output, checks the
          transmitted-frames digest and ends with the same state hash.

Exits 77 (CTest SKIP_RETURN_CODE) with a SKIP line when the images or tandem are missing, or
the kernel has no networking (no "IP-Config" line before the kv banner). Stdlib only.
"""
import argparse
import os
import queue
import random
import re
import socket
import subprocess
import sys
import threading
import time

import guest_scenario  # same directory
from guest_scenario import Failure, Skip

MEM_MIB = 128
BANNER = "tandem-kv ready"
KV_PORT = 5555
APPEND = "console=ttyS0 printk.time=0 ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off"
OPENSBI = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin"
STATE_HASH = re.compile(r"state-hash=([0-9a-f]+) icount=(\d+)")


class Machine:
    """A tandem process whose console (stdout) is read by a thread."""

    def __init__(self, cmd):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.chunks = queue.Queue()
        self.text = ""
        self.pos = 0
        self.stderr = b""
        threading.Thread(target=self._pump, daemon=True).start()
        self.err_thread = threading.Thread(target=self._pump_err, daemon=True)
        self.err_thread.start()

    def _pump(self):
        while True:
            data = self.proc.stdout.read1(65536)
            self.chunks.put(data or None)
            if not data:
                return

    def _pump_err(self):
        self.stderr = self.proc.stderr.read()

    def read_line(self, timeout):
        deadline = time.monotonic() + timeout
        while "\n" not in self.text[self.pos:]:
            try:
                data = self.chunks.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                data = b""
            if data is None:
                self.chunks.put(None)
                raise Failure(f"the machine exited (status {self.proc.poll()})\n{self.dump()}")
            self.text += data.decode("latin-1").replace("\r", "")
            if time.monotonic() > deadline:
                raise Failure(f"no console line within {timeout} s\n{self.dump()}")
        end = self.text.index("\n", self.pos)
        line = self.text[self.pos:end]
        self.pos = end + 1
        return line

    def wait_banner(self, timeout):
        deadline = time.monotonic() + timeout
        networked = False
        while True:
            line = self.read_line(max(1, deadline - time.monotonic()))
            networked |= line.startswith("IP-Config:")
            if line.startswith(BANNER):
                return networked

    def console(self, command, timeout):
        self.proc.stdin.write((command + "\n").encode())
        self.proc.stdin.flush()
        return self.read_line(timeout)

    def wait_exit(self, timeout):
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"the machine did not exit within {timeout} s\n{self.dump()}")
        self.err_thread.join(timeout=5)
        # Drain what it printed last.
        while True:
            try:
                data = self.chunks.get(timeout=1)
            except queue.Empty:
                break
            if data is None:
                self.chunks.put(None)
                break
            self.text += data.decode("latin-1").replace("\r", "")
        return status

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def dump(self):
        return (f"--- console (last 3000) ---\n{self.text[-3000:]}\n--- stderr ---\n"
                f"{self.stderr.decode(errors='replace')[-2000:]}")


class Client:
    """One TCP connection to the guest's kv service, line by line."""

    def __init__(self, port, timeout):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.latencies = []  # seconds per request/reply

    def ask(self, command):
        start = time.monotonic()
        self.sock.sendall((command + "\n").encode())
        while b"\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise Failure(f"the connection closed while waiting for the reply to {command!r}")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        self.latencies.append(time.monotonic() - start)
        return line.decode()

    def close(self):
        self.sock.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def boot_args(args):
    return ["--mem", str(MEM_MIB), "--bios", args.bios, "--kernel",
            os.path.join(args.images, "Image"), "--initrd",
            os.path.join(args.images, "initramfs.cpio"), "--append", APPEND]


def session(machine, port, timeout, rng):
    """SET/GET/DEL/COUNT over TCP with random pauses, the console in between, QUIT over TCP."""
    client = Client(port, timeout)
    try:
        keys = {}
        for i in range(12):
            key, value = f"net{i}", f"value {i} {rng.randrange(1 << 30)}"
            expect(client.ask(f"SET {key} {value}"), "OK", "SET over TCP")
            keys[key] = value
            time.sleep(rng.uniform(0, 0.05))
            expect(client.ask(f"GET {key}"), value, "GET over TCP")
            if i % 4 == 3:
                expect(client.ask(f"DEL {key}"), "OK", "DEL over TCP")
                del keys[key]
                expect(client.ask(f"GET {key}"), "NOT_FOUND", "GET after DEL")
        expect(client.ask("COUNT"), str(len(keys)), "COUNT over TCP")
        # The console still serves, between the client's lines.
        expect(machine.console("COUNT", timeout), str(len(keys)), "COUNT on the console")
        expect(machine.console("GET net0", timeout), keys["net0"], "GET on the console")
        expect(client.ask("GET net1"), keys["net1"], "GET over TCP after console use")
        lat = sorted(client.latencies)
        summary = (f"{len(lat)} requests, latency min/median/max "
                   f"{lat[0] * 1e3:.2f}/{lat[len(lat) // 2] * 1e3:.2f}/{lat[-1] * 1e3:.2f} ms")
        expect(client.ask("QUIT"), "BYE", "QUIT over TCP")
    finally:
        client.close()
    return f"{len(keys)} keys, {summary}"


def expect(got, want, what):
    if got != want:
        raise Failure(f"{what}: got {got!r}, expected {want!r}")


def check_prereqs(args):
    for name in ("Image", "initramfs.cpio"):
        if not os.path.exists(os.path.join(args.images, name)):
            raise Skip(f"Linux guest {name} not built in {args.images}; `make linux-guest`")
    if not os.path.exists(args.bios):
        raise Skip(f"OpenSBI firmware missing ({args.bios})")
    if not (args.tandem and os.access(args.tandem, os.X_OK)):
        raise Skip(f"tandem not built ({args.tandem})")


def run_networked(args, cmd, port):
    machine = Machine(cmd)
    try:
        if not machine.wait_banner(args.timeout):
            raise Skip("the Linux guest kernel has no networking (no IP-Config line): "
                       "rebuild it with the current guest/linux/tandem.config")
        rng = random.Random(args.seed)
        summary = session(machine, port, args.timeout, rng)
        status = machine.wait_exit(args.timeout)
    finally:
        machine.kill()
    if status != 0:
        raise Failure(f"tandem exited {status}\n{machine.dump()}")
    return machine, summary


def scenario_run(args, tmp):
    port = free_port()
    cmd = [args.tandem, "run", "--net", f"user,hostfwd=tcp:127.0.0.1:{port}-:{KV_PORT}",
           *boot_args(args)]
    _, summary = run_networked(args, cmd, port)
    print(f"run: kv over TCP through 127.0.0.1:{port} -> guest:{KV_PORT}: {summary}; "
          "the console answered too; QUIT over TCP powered off")


def scenario_record(args, tmp):
    port = free_port()
    log = os.path.join(tmp, "net.log")
    cmd = [args.tandem, "record", "--log", log, "--time", "wall", "--state-hash", "--net",
           f"user,hostfwd=tcp:127.0.0.1:{port}-:{KV_PORT}", *boot_args(args)]
    machine, summary = run_networked(args, cmd, port)
    rec = STATE_HASH.search(machine.stderr.decode(errors="replace"))
    if not rec:
        raise Failure(f"record: no state-hash\n{machine.dump()}")
    replay = subprocess.run([args.tandem, "replay", "--log", log, "--state-hash", "--stats",
                             *boot_args(args)], stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=args.timeout)
    rep = STATE_HASH.search(replay.stderr.decode(errors="replace"))
    replayed = replay.stdout.decode("latin-1").replace("\r", "")
    if replay.returncode != 0 or not rep or rep.groups() != rec.groups():
        raise Failure(f"replay: exit {replay.returncode}, {rep and rep.groups()} vs {rec.groups()}\n"
                      f"{replay.stderr.decode(errors='replace')[-2000:]}")
    if replayed != machine.text:
        raise Failure("the replayed console differs from the recorded one")
    print(f"record: {summary}; replay without a network matches (state-hash "
          f"{rec.group(1)} at icount {rec.group(2)}, transmitted frames digest checked)")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", required=True, choices=["run", "record"])
    ap.add_argument("--images", required=True)
    ap.add_argument("--tandem", required=True)
    ap.add_argument("--bios", default=OPENSBI)
    ap.add_argument("--timeout", type=int, default=120, help="seconds per step")
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args()
    def scenario(tmp):
        check_prereqs(args)
        if args.scenario == "run":
            scenario_run(args, tmp)
        else:
            scenario_record(args, tmp)

    return guest_scenario.run("tandem-linux-net-", scenario)

if __name__ == "__main__":
    sys.exit(main())
