#!/usr/bin/env python3
"""Runs a guest ELF on QEMU (the reference) and, in diff mode, on `tandem run` too.

Modes:
  qemu    the guest must pass on QEMU alone (guards the guest program itself).
  tandem  the guest must pass on Tandem alone (guests whose output depends on timing or
          entropy, so QEMU's output cannot be the reference).
  diff    the guest runs on both machines with identical inputs (stdin bytes, a fresh copy
          of the same disk image each); console output must be identical, both runs must
          exit with the same status, that status must agree with the PASS/FAIL summary the
          guest printed, and disk images written by the two runs must be identical.
Console input (--input) is sent only after the guest printed --prompt (see Machine).
Exits 77 (CTest SKIP_RETURN_CODE) when a needed binary (QEMU, tandem) is missing.

Stdlib only. Prints a unified diff on mismatch.
"""
import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
MEM_MIB = 128


def disk_pattern(size):
    """Known bytes: each 512-byte sector starts with its number, the rest a function of
    the offset, so a guest can checksum what it reads."""
    data = bytearray(size)
    for offset in range(size):
        data[offset] = (offset * 7 + (offset >> 9) * 13) & 0xFF
    for sector in range(size // 512):
        data[sector * 512:sector * 512 + 4] = sector.to_bytes(4, "little")
    return bytes(data)


def normalise(text):
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # QEMU's own notices (if any) are not guest output.
    lines = [l for l in text.split("\n") if not l.startswith("qemu-system-")]
    return "\n".join(lines)


class Machine:
    """A machine process (QEMU or `tandem run`) whose stdout and stderr are drained by
    threads as they come, so a test can wait for the guest's prompt before it types:
    stdin bytes that reach QEMU before its UART is up can be lost, and the guest then waits
    in WFI for input that never comes. Every wait ends at one deadline for the whole run;
    a miss kills the process and fails with the output so far, it never hangs."""

    def __init__(self, cmd, timeout, label):
        self.cmd, self.timeout, self.label = cmd, timeout, label
        self.deadline = time.monotonic() + timeout
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.changed = threading.Condition()
        self.out = bytearray()
        self.out_closed = False
        self.err = bytearray()
        self.readers = [threading.Thread(target=self._drain_stdout, daemon=True),
                        threading.Thread(target=self._drain_stderr, daemon=True)]
        for reader in self.readers:
            reader.start()

    def _drain_stdout(self):
        while data := self.proc.stdout.read1(65536):
            with self.changed:
                self.out += data
                self.changed.notify_all()
        with self.changed:
            self.out_closed = True
            self.changed.notify_all()

    def _drain_stderr(self):
        while data := self.proc.stderr.read1(65536):
            self.err += data

    def output(self):
        with self.changed:
            return normalise(bytes(self.out).decode(errors="replace"))

    def fail(self, why):
        """Kills the machine, prints why with everything it printed so far, exits 1."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for reader in self.readers:
            reader.join(timeout=5)
        print(f"{self.label}: {why}: {' '.join(self.cmd)}")
        print(f"--- {self.label} output so far ---\n{self.output()}")
        print(f"--- {self.label} stderr ---\n{bytes(self.err).decode(errors='replace')}")
        sys.exit(1)

    def wait_for(self, prompt):
        """Blocks until the console has shown `prompt` (a substring)."""
        with self.changed:
            while prompt.encode("latin-1") not in self.out:
                if self.out_closed:
                    break
                left = self.deadline - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(left)
            else:
                return
        if self.out_closed:
            self.fail(f"closed its console before its prompt {prompt!r}: its input was never sent")
        self.fail(f"no prompt {prompt!r} within {self.timeout}s: its input was never sent")

    def feed(self, data):
        """Writes `data` to the guest's console input. A writer thread, so a guest that stops
        reading cannot block us past the deadline."""
        def write():
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass  # the machine exited; finish() reports how
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        writer.join(max(0.0, self.deadline - time.monotonic()))
        if writer.is_alive():
            self.fail(f"did not take its {len(data)} input bytes within {self.timeout}s")

    def finish(self):
        """Closes the console input, waits for the exit: (status, console, stderr)."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.fail(f"TIMEOUT after {self.timeout}s")
        for reader in self.readers:
            reader.join(timeout=5)
        return self.proc.returncode, self.output(), bytes(self.err).decode(errors="replace")


def run(cmd, stdin_bytes, timeout, label, prompt=None):
    """Runs a machine to its exit. With `prompt`, `stdin_bytes` are sent only once the
    console has shown it (see Machine); a run without input gets an empty stdin."""
    if stdin_bytes and prompt is None:
        raise ValueError(f"{label}: console input needs a prompt to wait for")
    machine = Machine(cmd, timeout, label)
    if stdin_bytes:
        machine.wait_for(prompt)
        machine.feed(stdin_bytes)
    return machine.finish()


def qemu_cmd(args, elf, disk):
    cmd = [args.qemu, "-machine", "virt", "-bios", "none", "-m", f"{MEM_MIB}M",
           "-icount", "shift=0", "-display", "none", "-monitor", "none",
           "-serial", "stdio", "-kernel", elf]
    rng = getattr(args, "rng", False)
    if disk or rng:
        # virtio-mmio in QEMU defaults to the legacy (version 1) transport.
        cmd += ["-global", "virtio-mmio.force-legacy=false"]
    if disk:
        cmd += ["-drive", f"file={disk},if=none,format=raw,id=hd0",
                "-device", "virtio-blk-device,drive=hd0"]
    if rng:
        cmd += ["-device", "virtio-rng-device"]
    return cmd


def tandem_cmd(args, elf, disk):
    cmd = [args.tandem, "run", "--mem", str(MEM_MIB)]
    if disk:
        cmd += ["--disk", disk]
    return cmd + [elf]


def summary_verdict(output):
    """'pass', 'fail' or None from the guest's own summary line."""
    for line in reversed(output.split("\n")):
        if line.endswith(": PASS"):
            return "pass"
        if line.endswith(": FAIL"):
            return "fail"
    return None


def check_alone(name, status, output, stderr, want_status, want_lines=()):
    ok = True
    lines = output.split("\n")
    for pattern in want_lines:
        if not any(re.fullmatch(pattern, line) for line in lines):
            print(f"{name}: no output line matches {pattern!r}")
            ok = False
    if status != want_status:
        print(f"{name}: exit status {status}, want {want_status}")
        ok = False
    if "FAIL" in output:
        print(f"{name}: guest reported failures")
        ok = False
    if summary_verdict(output) == "fail":
        ok = False
    if not ok:
        print(f"--- {name} console ---\n{output}\n--- {name} stderr ---\n{stderr}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["qemu", "tandem", "diff"], required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--qemu", default="qemu-system-riscv64")
    ap.add_argument("--tandem")
    ap.add_argument("--input", default="", help="bytes fed to the UART on stdin")
    ap.add_argument("--prompt", help="console text after which the guest reads its input: "
                                     "--input is sent only once it appeared (required with "
                                     "--input)")
    ap.add_argument("--disk-kib", type=int, default=0, help="attach a virtio-blk disk")
    ap.add_argument("--rng", action="store_true",
                    help="QEMU: attach a virtio-rng device (Tandem: whatever its board has)")
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--expect-status", type=int, default=0,
                    help="exit status the guest asks for through the finisher")
    ap.add_argument("--expect-line", action="append", default=[], metavar="REGEX",
                    help="some output line must match REGEX in full (repeatable; qemu and "
                         "tandem modes, for guests whose output has no reference)")
    args = ap.parse_args()

    if not os.path.exists(args.guest):
        print(f"guest not built: {args.guest}")
        return 1
    if args.mode != "tandem" and shutil.which(args.qemu) is None:
        print(f"SKIP: {args.qemu} not installed")
        return SKIP
    if args.mode in ("tandem", "diff") and not (args.tandem and os.access(args.tandem, os.X_OK)):
        print(f"SKIP: tandem binary not built ({args.tandem}); only the QEMU half could run")
        return SKIP

    stdin_bytes = args.input.encode().decode("unicode_escape").encode("latin-1")
    if stdin_bytes and not args.prompt:
        print("--input needs --prompt: input sent before the guest's UART is up can be lost")
        return 2
    with tempfile.TemporaryDirectory(prefix="tandem-guest-") as tmp:
        qemu_disk = tandem_disk = None
        if args.disk_kib:
            image = disk_pattern(args.disk_kib * 1024)
            qemu_disk = os.path.join(tmp, "qemu.img")
            tandem_disk = os.path.join(tmp, "tandem.img")
            for path in (qemu_disk, tandem_disk):
                with open(path, "wb") as f:
                    f.write(image)

        if args.mode == "tandem":
            t_status, t_out, t_err = run(tandem_cmd(args, args.guest, tandem_disk), stdin_bytes,
                                         args.timeout, "tandem", args.prompt)
            if not check_alone("tandem", t_status, t_out, t_err, args.expect_status,
                               args.expect_line):
                return 1
            print(t_out)
            print(f"PASS: guest ends with status {args.expect_status} on Tandem")
            return 0

        q_status, q_out, q_err = run(qemu_cmd(args, args.guest, qemu_disk), stdin_bytes,
                                     args.timeout, "qemu", args.prompt)
        if args.mode == "qemu":
            if not check_alone("qemu", q_status, q_out, q_err, args.expect_status,
                               args.expect_line):
                return 1
            print(q_out)
            print(f"PASS: guest ends with status {args.expect_status} on QEMU")
            return 0

        t_status, t_out, t_err = run(tandem_cmd(args, args.guest, tandem_disk), stdin_bytes,
                                     args.timeout, "tandem", args.prompt)
        failed = False
        if q_out != t_out:
            failed = True
            print("console output differs (--- qemu, +++ tandem):")
            sys.stdout.writelines(difflib.unified_diff(
                q_out.splitlines(keepends=True), t_out.splitlines(keepends=True),
                "qemu", "tandem"))
            print()
        if q_status != t_status:
            failed = True
            print(f"exit status differs: qemu {q_status}, tandem {t_status}")
        verdict = summary_verdict(t_out)
        if verdict is not None and (verdict == "pass") != (t_status == 0):
            failed = True
            print(f"tandem exit status {t_status} contradicts the guest's summary ({verdict})")
        if not check_alone("tandem", t_status, t_out, t_err, args.expect_status):
            failed = True
        if tandem_disk:
            with open(qemu_disk, "rb") as a, open(tandem_disk, "rb") as b:
                if a.read() != b.read():
                    failed = True
                    print("disk images differ after the runs")
        if failed:
            print(f"--- tandem stderr ---\n{t_err}")
            return 1
        print(t_out)
        print("PASS: identical console output and exit status on QEMU and Tandem")
        return 0


if __name__ == "__main__":
    sys.exit(main())
