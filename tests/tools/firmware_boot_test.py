#!/usr/bin/env python3
"""`tandem run --bios/--kernel/--initrd/--append` with the real OpenSBI (Debian's fw_jump.bin)
and our S-mode payload (guest/sbi_payload), checked against QEMU.

1. The payload boots under OpenSBI, prints through the SBI console, takes an SBI timer
   interrupt and powers off through SBI SRST (the sifive_test syscon) -> exit status 0.
2. The console output equals QEMU's (`-icount shift=0`, a QEMU hart without F/D/H/Sstc, like
   ours) except the OpenSBI banner lines that count PMP entries and MHPM counters (Tandem has
   none of either), named in HART_LINES.
3. Two runs reach the same state hash at the same icount; a snapshot saved mid-boot and
   restored in another process (no images given) finishes identically.
4. record/replay of a firmware boot replays bit for bit.
5. Bad input: every refused combination exits 2 with one line on stderr.

Usage: firmware_boot_test.py TANDEM PAYLOAD_BIN [FW_JUMP_BIN]. Exits 77 when OpenSBI is
missing (CTest skip). Stdlib only.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77
DEFAULT_FW = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin"
TIMEOUT = 120
# QEMU's hart made as close to ours as its options allow (rv64imafdc + Zicsr/Zifencei).
QEMU_CPU = "rv64,h=false,sstc=false"
# OpenSBI banner lines that still differ: QEMU's hart has 16 PMP entries and 16 MHPM
# counters, Tandem's none (docs/vmm.md, CPU policies).
HART_LINES = ("Boot HART PMP Count", "Boot HART PMP Granularity", "Boot HART PMP Address Bits",
              "Boot HART MHPM Count")

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(cmd, stdin=b""):
    proc = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=TIMEOUT)
    return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def state_hash(stderr):
    m = re.search(r"state-hash=([0-9a-f]{16}) icount=(\d+)", stderr)
    return (m.group(1), int(m.group(2))) if m else None


def without_hart_lines(text):
    text = text.replace("\r\n", "\n")
    return [l for l in text.split("\n") if not l.startswith(HART_LINES) and not l.startswith("qemu-system-")]


def main():
    tandem, payload = sys.argv[1], sys.argv[2]
    fw = sys.argv[3] if len(sys.argv) > 3 else DEFAULT_FW
    if not os.path.exists(fw):
        print(f"skip: {fw} not installed (apt-get install opensbi)")
        return SKIP
    boot = ["--bios", fw, "--kernel", payload]
    work = tempfile.mkdtemp(prefix="tandem_fw_boot_")
    try:
        # 1. Boot, SBI console, SBI timer, SRST poweroff.
        rc, out, err = run([tandem, "run", *boot, "--state-hash"])
        check(rc == 0, f"payload powers off through SBI SRST with status 0 (got {rc}; stderr {err.strip()!r})")
        check("OpenSBI v1.1" in out, "OpenSBI banner on the console")
        check("Platform Shutdown Device  : sifive_test" in out, "OpenSBI found the syscon poweroff device")
        check("sbi_payload: PASS, shutting down" in out, "payload checks passed")
        check("Boot HART Base ISA        : rv64imafdc" in out, "OpenSBI sees rv64imafdc")
        check("Boot HART PMP Count       : 0" in out, "OpenSBI detects no PMP (PMP CSRs read zero)")
        first = state_hash(err)
        check(first is not None, "--state-hash printed")

        # 2. Against QEMU.
        qemu = shutil.which("qemu-system-riscv64")
        if qemu:
            qrc, qout, qerr = run([qemu, "-M", "virt", "-cpu", QEMU_CPU, "-bios", fw, "-kernel", payload, "-nographic",
                                   "-icount", "shift=0", "-m", "128", "-monitor", "none", "-serial", "stdio"])
            check(qrc == 0, f"QEMU runs the payload to poweroff (status {qrc})")
            ours, theirs = without_hart_lines(out), without_hart_lines(qout)
            if ours != theirs:
                import difflib
                sys.stdout.writelines(difflib.unified_diff([l + "\n" for l in theirs], [l + "\n" for l in ours],
                                                           "qemu", "tandem"))
            check(ours == theirs, "console output equals QEMU's apart from the PMP and MHPM count lines")
        else:
            print("note: qemu-system-riscv64 not found; QEMU comparison skipped")

        # 3. Determinism and save/restore.
        rc, out2, err2 = run([tandem, "run", *boot, "--state-hash"])
        check(rc == 0 and out2 == out and state_hash(err2) == first, "a second boot: same output, same state hash")
        snap = os.path.join(work, "mid.snap")
        save_at = first[1] // 2
        rc, out3, err3 = run([tandem, "run", *boot, "--save", snap, "--save-at", str(save_at), "--state-hash"])
        check(rc == 0 and out3 == out and state_hash(err3) == first, "a run that saves mid-boot is unchanged")
        rc, out4, err4 = run([tandem, "run", "--restore", snap, "--state-hash"])
        check(rc == 0 and state_hash(err4) == first,
              f"restored in a new process (no images), the boot ends in the same state ({state_hash(err4)} vs {first})")
        check(out4 != "" and out.endswith(out4) and "sbi_payload: PASS" in out4,
              "the restored run prints the rest of the console output")

        # 4. record/replay.
        log = os.path.join(work, "boot.log")
        rc, rout, rerr = run([tandem, "record", *boot, "--log", log, "--time", "virtual", "--state-hash"])
        check(rc == 0 and "sbi_payload: PASS" in rout, f"record a firmware boot (status {rc}: {rerr.strip()!r})")
        rc, pout, perr = run([tandem, "replay", *boot, "--log", log, "--state-hash"])
        check(rc == 0 and pout == rout and state_hash(perr) == state_hash(rerr),
              f"replay reproduces it (status {rc}: {perr.strip()!r})")
        rc, _, perr = run([tandem, "replay", "--bios", fw, "--kernel", fw, "--log", log])
        check(rc == 2 and "initial state" in perr, f"replay with another kernel is refused ({perr.strip()!r})")

        # --dump-dtb: the tree the firmware gets, with the initrd range and bootargs.
        dtb = os.path.join(work, "boot.dtb")
        cpio = os.path.join(work, "tiny.cpio")
        with open(cpio, "wb") as f:
            f.write(b"070701" + b"0" * 4000)
        rc, _, err = run([tandem, "run", *boot, "--initrd", cpio, "--append", "console=ttyS0 quiet", "--dump-dtb", dtb])
        blob = open(dtb, "rb").read() if os.path.exists(dtb) else b""
        check(rc == 0 and blob[:4] == bytes.fromhex("d00dfeed") and int.from_bytes(blob[4:8], "big") == len(blob),
              f"--dump-dtb writes a whole device tree (status {rc}, {len(blob)} bytes, {err.strip()!r})")
        check(all(x in blob for x in (b"linux,initrd-start", b"linux,initrd-end", b"console=ttyS0 quiet\0",
                                       b"rv64imafdc\0", b"riscv,sv39\0", b"syscon-poweroff\0")),
              "the dumped tree has the initrd range, bootargs, ISA and the syscon poweroff node")

        # 5. Bad input.
        big = os.path.join(work, "big.bin")
        with open(big, "wb") as f:
            f.truncate(20 << 20)
        initrd = os.path.join(work, "initrd.cpio")
        with open(initrd, "wb") as f:
            f.write(b"\x01" * (15 << 20))
        empty = os.path.join(work, "empty")
        open(empty, "wb").close()
        missing = os.path.join(work, "missing.bin")
        cases = [
            ([payload, "--bios", fw], "GUEST and --bios"),
            (["--kernel", payload], "--kernel needs --bios"),
            (["--bios", fw, "--initrd", initrd], "--initrd needs --kernel"),
            (["--bios", fw, "--kernel", missing], "cannot open"),
            (["--bios", missing], "cannot open"),
            (["--bios", work], "not a regular file"),
            (["--bios", fw, "--kernel", empty], "empty image"),
            (["--bios", fw, "--kernel", payload, "--initrd", empty], "empty file"),
            (["--bios", fw, "--kernel", big, "--mem", "16"], "does not fit in RAM"),
            (["--bios", fw, "--kernel", payload, "--initrd", big, "--mem", "16"], "do not fit in RAM below the device tree"),
            (["--bios", fw, "--kernel", payload, "--initrd", initrd, "--mem", "16"], "overlaps"),
            (["--bios", big, "--kernel", payload, "--mem", "64"], "overlaps --bios"),
        ]
        for args, expect in cases:
            for cmd in ("run", "record"):
                extra = ["--log", os.path.join(work, "x.log")] if cmd == "record" else []
                rc, out, err = run([tandem, cmd, *args, *extra])
                lines = err.strip().split("\n")
                check(rc == 2 and len(lines) == 1 and lines[0].startswith("tandem: error:") and expect in err,
                      f"{cmd} {' '.join(os.path.basename(a) for a in args)} -> status 2, '{expect}' (got {rc}: {err.strip()!r})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
