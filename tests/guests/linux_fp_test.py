#!/usr/bin/env python3
"""/fptest (guest/linux/fptest: a static glibc rv64gc/lp64d program) as init of the Linux
guest (rdinit=/fptest), on QEMU (the reference) and on Tandem.

Scenarios (--scenario, one CTest test each):
  diff    QEMU and `tandem run` boot the same kernel and initramfs with rdinit=/fptest; the
          program's output, from "fptest: start" to its verdict, must be identical line for
          line (apart from HOST_SPECIFIC kernel lines; printf of doubles, strtod, libm, fenv
          rounding modes and flags, setjmp, four threads computing with doubles across
          context switches, two processes likewise), it must end with
          "fptest: PASS" on both, and both machines must power off with status 0. Tandem
          runs it twice: the same console and the same final state hash and icount.
  record  `tandem record` of the same boot, `tandem replay` in another process: the console
          byte for byte and the final state hash (which covers the f registers and fcsr).

The images come from TANDEM_LINUX_IMAGES when set, else --images. Exits 77 (CTest
SKIP_RETURN_CODE) with a SKIP line when the images, OpenSBI, QEMU or tandem are missing, as
linux_boot_test.py does. Stdlib only.
"""
import argparse
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import guest_scenario  # noqa: E402  (same directory)
from guest_scenario import Failure  # noqa: E402
from linux_boot_test import APPEND, HOST_SPECIFIC, STATE_HASH, Images  # noqa: E402

FP_APPEND = APPEND + " rdinit=/fptest"
START, PASS = "fptest: start", "fptest: PASS"
# Lines the program must print (beyond equality with QEMU): its own checks' verdicts.
# ("fptest: PASS" also requires its two-process check, which images built before it lack.)
MARKERS = ["threads: each got its own results", "setjmp: returned 7, kept 43",
           "fenv flags: divbyzero 1 overflow 1 invalid 1 inexact 1", PASS]


def fptest_lines(text, label):
    """The program's output: from its start line to its verdict line (inclusive)."""
    lines = text.replace("\r", "").split("\n")
    try:
        start = lines.index(START)
    except ValueError:
        raise Failure(f"{label}: no {START!r} line\n{text[-3000:]}")
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("fptest: ")
                and i > start), None)
    if end is None:
        raise Failure(f"{label}: no verdict line after {START!r}\n{text[-3000:]}")
    # The kernel may print between the program's lines; drop the ones linux_boot_test.py
    # knows to differ between the boards (e.g. "random: crng init done").
    return [l for l in lines[start:end + 1]
            if not any(re.fullmatch(p, l) for p, _ in HOST_SPECIFIC)]


def run(cmd, label, timeout):
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure(f"{label}: no power-off within {timeout}s: {' '.join(cmd)}")
    text = proc.stdout.decode("latin-1")
    if proc.returncode != 0:
        raise Failure(f"{label}: exit status {proc.returncode}, want 0 (power-off)\n"
                      f"{text[-3000:]}\n{proc.stderr.decode(errors='replace')[-2000:]}")
    return text, proc.stderr.decode(errors="replace")


def check_markers(lines, label):
    for marker in MARKERS:
        if marker not in lines:
            raise Failure(f"{label}: fptest did not print {marker!r}:\n" + "\n".join(lines))


def qemu_cmd(img):
    cmd = img.qemu_cmd(None)
    cmd[cmd.index("-append") + 1] = FP_APPEND
    return cmd


def tandem_args(img):
    args = img.tandem_boot_args(None)
    args[args.index("--append") + 1] = FP_APPEND
    return args


def scenario_diff(img):
    img.require(tandem=True, qemu=True)
    q = fptest_lines(run(qemu_cmd(img), "qemu", img.timeout)[0], "qemu")
    check_markers(q, "qemu")
    runs = []
    for i in (1, 2):
        out, err = run([img.tandem, "run", "--state-hash", *tandem_args(img)], f"tandem run {i}",
                       img.timeout)
        m = STATE_HASH.search(err)
        if not m:
            raise Failure(f"tandem run {i}: no state-hash line\n{err[-2000:]}")
        runs.append((m.groups(), out))
    t = fptest_lines(runs[0][1], "tandem")
    if q != t:
        import difflib
        diff = "\n".join(difflib.unified_diff(q, t, "qemu", "tandem", lineterm=""))
        raise Failure("fptest's output differs between QEMU and Tandem:\n" + diff)
    check_markers(t, "tandem")
    if runs[0] != runs[1]:
        raise Failure(f"two tandem runs of the fptest boot differ: {runs[0][0]} vs {runs[1][0]}, "
                      f"console equal: {runs[0][1] == runs[1][1]}")
    print(f"diff: fptest prints the same {len(t)} lines on QEMU and Tandem, ending in {PASS!r}; "
          f"two Tandem runs end with the same state-hash {runs[0][0][0]} at icount {runs[0][0][1]}")


def scenario_record(img, tmp):
    img.require(tandem=True)
    log = os.path.join(tmp, "fptest.log")
    rec_out, rec_err = run([img.tandem, "record", "--log", log, "--state-hash",
                            *tandem_args(img)], "record", img.timeout)
    check_markers(fptest_lines(rec_out, "record"), "record")
    rep_out, rep_err = run([img.tandem, "replay", "--log", log, "--state-hash",
                            *tandem_args(img)], "replay", img.timeout)
    rec, rep = STATE_HASH.search(rec_err), STATE_HASH.search(rep_err)
    if not rec or not rep:
        raise Failure(f"no state-hash line:\nrecord: {rec_err[-1000:]}\nreplay: {rep_err[-1000:]}")
    if rec.groups() != rep.groups() or rec_out != rep_out:
        raise Failure(f"replay differs: {rep.groups()} vs recorded {rec.groups()}, console "
                      f"equal: {rec_out == rep_out}")
    print(f"record: replay of the fptest boot matches bit for bit (state-hash {rec.group(1)} "
          f"at icount {rec.group(2)})")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", required=True, choices=["diff", "record"])
    ap.add_argument("--images", required=True, help="directory with Image and initramfs.cpio "
                                                    "(TANDEM_LINUX_IMAGES overrides)")
    ap.add_argument("--bios", default="/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin")
    ap.add_argument("--qemu", default="qemu-system-riscv64")
    ap.add_argument("--tandem")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per boot")
    args = ap.parse_args()
    args.images = os.environ.get("TANDEM_LINUX_IMAGES") or args.images
    args.kv_elf = None
    img = Images(args)
    if args.scenario == "diff":
        return guest_scenario.run("tandem-fptest-", lambda tmp: scenario_diff(img))
    return guest_scenario.run("tandem-fptest-", lambda tmp: scenario_record(img, tmp))

if __name__ == "__main__":
    sys.exit(main())
