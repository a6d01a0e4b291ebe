#!/usr/bin/env python3
"""The Linux guest (guest/linux: kernel Image + initramfs whose /init serves the kv protocol)
booted under OpenSBI, on QEMU (the reference) and on `tandem run --bios --kernel --initrd`.

Scenarios (--scenario, one CTest test each):
  qemu         the image itself: QEMU boots it to the kv banner, the kv session answers
               exactly as the bare-metal guest would, QUIT powers off with status 0.
  persist      (QEMU and, when it boots Linux, Tandem) "kv under Linux survives SYNC +
               reboot": boot 1 sets keys, SYNCs, sets one more without SYNC and powers off;
               boot 2 on the same disk finds exactly the synced keys; the image is parsed
               here (guest/kv's on-disk format); a REBOOT command restarts the kernel on
               QEMU and the store comes back again; a store with a flipped record byte
               is ignored as corrupt and foreign data is taken as a fresh disk; with
               --kv-elf, the bare-metal kv guest loads the Linux guest's store and the
               Linux guest loads what the bare-metal one synced.
  tandem       Tandem boots the image to the kv banner, serves SET/GET, powers off with
               status 0, and its console up to the banner equals QEMU's for the same
               image apart from the lines named in HOST_SPECIFIC.
  determinism  two `tandem run` boots give the same --state-hash at the same
               --max-instructions, and a --save-at snapshot taken mid-boot, restored in
               another process, ends with the same hash.
  record       `tandem record` (--time virtual and wall) of an interactive kv session over
               Linux, `tandem replay` in another process: console output byte for byte, the
               same final hash, the same disk.
  bad-input    a kernel or initrd too large for guest RAM; a missing, empty, unreadable or
               directory kernel/initrd/firmware: `tandem run` exits 2 with a line naming the
               file or the size problem, and the guest never runs (no console output).

Exits 77 (CTest SKIP_RETURN_CODE) with a SKIP line when the images are not built, QEMU or
OpenSBI is missing, or (Tandem scenarios) tandem is missing or cannot boot Linux yet.
Stdlib only.
"""
import argparse
import os
import queue
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib

import guest_scenario  # same directory
from guest_scenario import Failure, Skip

MEM_MIB = 128
DISK_BYTES = 1 << 20
SECTOR = 512
BANNER = "tandem-kv ready"
APPEND = "console=ttyS0 printk.time=0"
QEMU_CPU = "rv64,h=false,sstc=false"  # the hart Tandem emulates (RV64GC)
OPENSBI = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin"
SB_FORMAT = "<QIIIIQI"
SB_MAGIC = int.from_bytes(b"TANDEMKV", "little")

# Console lines that may differ between QEMU and Tandem booting the same image, with why.
# Everything from "Linux version" up to the kv banner must otherwise be identical, in order.
# (Before "Linux version" is OpenSBI's banner, which describes each board's M-mode hardware:
# PMP and HPM counter counts.) QEMU runs with `-cpu rv64,h=false,sstc=false`
# so that its hart offers what Tandem's rv64imafdc hart does; with the H extension or Sstc on,
# "riscv: base ISA extensions" and the riscv-timer lines would differ too.
HOST_SPECIFIC = [
    (r"Memory: \d+K/\d+K available .*",
     "the firmware/device-tree reservations differ in size (each board builds its own FDT)"),
    (r"Freeing initrd memory: \d+K", "the initrd's page alignment depends on where it is put"),
    (r"random: .*", "when entropy arrives depends on the board's devices"),
]


# ---- running a machine with an interactive console ---------------------------------------

class Console:
    """A machine process whose stdout is read by a thread, so the test can wait for lines
    with a deadline and talk to the guest one command at a time."""

    def __init__(self, cmd, label):
        self.cmd, self.label = cmd, label
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.chunks = queue.Queue()
        self.text = ""  # everything received, \r removed
        self.pos = 0    # what the test has consumed
        self.stderr = b""
        threading.Thread(target=self._pump, daemon=True).start()
        self.stderr_thread = threading.Thread(target=self._pump_stderr, daemon=True)
        self.stderr_thread.start()

    def _pump(self):
        while True:
            data = self.proc.stdout.read1(65536)
            if not data:
                self.chunks.put(None)
                return
            self.chunks.put(data)

    def _pump_stderr(self):
        self.stderr = self.proc.stderr.read()

    def _receive(self, deadline):
        try:
            data = self.chunks.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            return True
        if data is None:
            self.chunks.put(None)  # stays at EOF
            return False
        self.text += data.decode("latin-1").replace("\r", "")
        return True

    def read_line(self, timeout):
        deadline = time.monotonic() + timeout
        while "\n" not in self.text[self.pos:]:
            if time.monotonic() > deadline:
                raise Failure(f"{self.label}: no complete line within {timeout}s\n{self.dump()}")
            if not self._receive(deadline):
                raise Failure(f"{self.label}: console closed\n{self.dump()}")
        end = self.text.index("\n", self.pos)
        line = self.text[self.pos:end]
        self.pos = end + 1
        return line

    def wait_banner(self, timeout):
        """Skips the boot log; returns the kv banner line."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.read_line(max(0.1, deadline - time.monotonic()))
            if line.startswith(BANNER):
                return line

    def command(self, line, timeout=60):
        self.proc.stdin.write((line + "\n").encode("latin-1"))
        self.proc.stdin.flush()
        return self.read_line(timeout)

    def session(self, commands, timeout=60):
        for line, want in commands:
            got = self.command(line, timeout)
            if got != want:
                raise Failure(f"{self.label}: {line!r} answered {got!r}, want {want!r}\n"
                              f"{self.dump()}")

    def wait_exit(self, timeout):
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"{self.label}: still running {timeout}s after power-off\n{self.dump()}")
        deadline = time.monotonic() + 5
        while self._receive(deadline) and time.monotonic() < deadline:
            pass
        self.stderr_thread.join(timeout=5)  # the end-of-run report (--stats, --state-hash)
        return status

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def dump(self):
        err = self.stderr.decode(errors="replace")[-2000:]
        return (f"--- {self.label}: {' '.join(self.cmd)}\n--- console (last 4000 chars) ---\n"
                f"{self.text[-4000:]}\n--- stderr ---\n{err}")


class Images:
    def __init__(self, args):
        self.dir = args.images
        self.kernel = os.path.join(self.dir, "Image")
        self.initrd = os.path.join(self.dir, "initramfs.cpio")
        self.bios = args.bios
        self.qemu = args.qemu
        self.tandem = args.tandem
        self.timeout = args.timeout
        self.kv_elf = args.kv_elf if args.kv_elf and os.path.exists(args.kv_elf) else None

    def require(self, tandem=False, qemu=False):
        for path, what in ((self.kernel, "kernel Image"), (self.initrd, "initramfs")):
            if not os.path.exists(path):
                raise Skip(f"Linux guest {what} not built ({path}); `make linux-guest`")
        if not os.path.exists(self.bios):
            raise Skip(f"OpenSBI firmware missing ({self.bios}); install the opensbi package")
        if qemu and shutil.which(self.qemu) is None:
            raise Skip(f"{self.qemu} not installed")
        if tandem:
            if not (self.tandem and os.access(self.tandem, os.X_OK)):
                raise Skip(f"tandem binary not built ({self.tandem})")
            helptext = subprocess.run([self.tandem, "run", "--help"], capture_output=True,
                                      text=True).stdout
            if "--kernel" not in helptext or "--initrd" not in helptext:
                raise Skip("tandem run has no --kernel/--initrd yet: it cannot boot Linux")

    def qemu_cmd(self, disk):
        cmd = [self.qemu, "-M", "virt", "-cpu", QEMU_CPU, "-m", f"{MEM_MIB}M",
               "-bios", self.bios, "-kernel", self.kernel, "-initrd", self.initrd,
               "-append", APPEND, "-icount", "shift=0", "-display", "none",
               "-monitor", "none", "-serial", "stdio", "-nic", "none",
               "-global", "virtio-mmio.force-legacy=false"]
        if disk:
            cmd += ["-drive", f"file={disk},if=none,format=raw,id=d0",
                    "-device", "virtio-blk-device,drive=d0"]
        return cmd

    def tandem_boot_args(self, disk, kernel=None, initrd=None, bios=None):
        args = ["--mem", str(MEM_MIB), "--bios", bios or self.bios, "--kernel",
                kernel or self.kernel, "--initrd", initrd or self.initrd, "--append", APPEND]
        if disk:
            args += ["--disk", disk]
        return args

    def tandem_cmd(self, disk, *extra):
        return [self.tandem, "run", *self.tandem_boot_args(disk), *extra]


# ---- the kv session and the disk image -----------------------------------------------------

FIRST_BOOT = [
    ("COUNT", "0"),
    ("GET colour", "NOT_FOUND"),
    ("SET colour blue", "OK"),
    ("SET user:1 alice smith", "OK"),
    ("GET colour", "blue"),
    ("GET user:1", "alice smith"),
    ("SET crlf yes\r", "OK"),
    ("GET crlf\r", "yes"),
    ("DEL crlf", "OK"),
    ("DEL crlf", "NOT_FOUND"),
    ("SET " + "k" * 33 + " v", "ERR key too long"),
    ("SET lonely", "ERR usage: SET key value"),
    ("GET a b", "ERR expected one key"),
    ("COUNT now", "ERR unexpected argument"),
    ("", "ERR empty line"),
    ("PING", "ERR unknown command"),
    ("x" * 300, "ERR line too long"),
    ("COUNT", "2"),
    ("SYNC", "OK"),
    ("SET unsynced gone", "OK"),
    ("COUNT", "3"),
]
SECOND_BOOT = [
    ("COUNT", "2"),
    ("GET colour", "blue"),
    ("GET unsynced", "NOT_FOUND"),
    ("SET colour green", "OK"),
    ("SYNC", "OK"),
]


def parse_image(path):
    """The keys of a kv store image, checked like the guest checks it."""
    with open(path, "rb") as f:
        data = f.read()
    magic, version, count, nbytes, data_crc, generation, header_crc = \
        struct.unpack_from(SB_FORMAT, data, 0)
    if magic != SB_MAGIC or version != 1:
        raise Failure(f"{path}: no kv superblock (magic {magic:#x}, version {version})")
    if zlib.crc32(data[:32]) != header_crc:
        raise Failure(f"{path}: bad superblock checksum")
    records = data[SECTOR:SECTOR + nbytes]
    if zlib.crc32(records) != data_crc:
        raise Failure(f"{path}: bad record checksum")
    store, at = {}, 0
    for _ in range(count):
        klen, vlen = records[at], records[at + 1]
        key = records[at + 2:at + 2 + klen].decode()
        store[key] = records[at + 2 + klen:at + 2 + klen + vlen].decode()
        at += 2 + klen + vlen
    if at != nbytes:
        raise Failure(f"{path}: {nbytes - at} trailing record bytes")
    return store, generation


def fresh_disk(tmp, name):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.truncate(DISK_BYTES)
    return path


def boot_session(cmd, label, commands, timeout, final="QUIT", want_banner=None):
    """Boots, checks the banner, runs `commands`, sends `final` and expects power-off with
    status 0. Returns the console text."""
    console = Console(cmd, label)
    try:
        banner = console.wait_banner(timeout)
        if want_banner and banner != want_banner:
            raise Failure(f"{label}: banner {banner!r}, want {want_banner!r}\n{console.dump()}")
        console.session(commands)
        if final:
            console.session([(final, "BYE")])
            status = console.wait_exit(timeout)
            if status != 0:
                raise Failure(f"{label}: exit status {status} after {final}, want 0\n"
                              f"{console.dump()}")
        return console.text
    finally:
        console.kill()


# ---- scenarios -----------------------------------------------------------------------------

def scenario_qemu(img, tmp):
    img.require(qemu=True)
    disk = fresh_disk(tmp, "qemu.img")
    text = boot_session(img.qemu_cmd(disk), "qemu", FIRST_BOOT, img.timeout,
                        want_banner=f"{BANNER} keys=0 (fresh disk)")
    if "Linux version 6.1" not in text:
        raise Failure("qemu: no 'Linux version 6.1' line in the boot log")
    # No disk: the store runs in RAM only, SYNC says so.
    boot_session(img.qemu_cmd(None), "qemu (no disk)", [("SYNC", "ERR no disk")], img.timeout,
                 want_banner=f"{BANNER} keys=0 (no disk)")
    print("qemu: boots to the kv banner, session and power-off OK")


def persist_on(img, tmp, label, cmd_for):
    disk = fresh_disk(tmp, f"{label}.img")
    boot_session(cmd_for(disk), f"{label} boot 1", FIRST_BOOT, img.timeout,
                 want_banner=f"{BANNER} keys=0 (fresh disk)")
    store, generation = parse_image(disk)
    if store != {"colour": "blue", "user:1": "alice smith"} or generation != 1:
        raise Failure(f"{label}: image after boot 1 holds {store} (generation {generation})")
    boot_session(cmd_for(disk), f"{label} boot 2", SECOND_BOOT, img.timeout,
                 final="POWEROFF", want_banner=f"{BANNER} keys=2")
    store, generation = parse_image(disk)
    if store != {"colour": "green", "user:1": "alice smith"} or generation != 2:
        raise Failure(f"{label}: image after boot 2 holds {store} (generation {generation})")
    return disk


def scenario_persist(img, tmp):
    img.require(qemu=True)
    disk = persist_on(img, tmp, "qemu", img.qemu_cmd)
    # REBOOT restarts the kernel inside the same QEMU process; the store comes back.
    console = Console(img.qemu_cmd(disk), "qemu reboot")
    try:
        console.wait_banner(img.timeout)
        console.session([("SET after reboot", "OK"), ("SYNC", "OK"), ("REBOOT", "BYE")])
        banner = console.wait_banner(img.timeout)
        if banner != f"{BANNER} keys=3":
            raise Failure(f"qemu reboot: banner after REBOOT {banner!r}\n{console.dump()}")
        console.session([("GET after", "reboot"), ("QUIT", "BYE")])
        if console.wait_exit(img.timeout) != 0:
            raise Failure(f"qemu reboot: nonzero exit\n{console.dump()}")
    finally:
        console.kill()
    # The same image in the bare-metal kv guest (guest/kv): one on-disk format for both.
    if img.kv_elf:
        bare = [img.qemu, "-machine", "virt", "-bios", "none", "-m", f"{MEM_MIB}M",
                "-icount", "shift=0", "-display", "none", "-monitor", "none",
                "-serial", "stdio", "-global", "virtio-mmio.force-legacy=false",
                "-kernel", img.kv_elf, "-drive", f"file={disk},if=none,format=raw,id=d0",
                "-device", "virtio-blk-device,drive=d0"]
        boot_session(bare, "bare-metal kv", [("GET after", "reboot"), ("GET colour", "green"),
                                             ("SET bare metal", "OK"), ("SYNC", "OK")],
                     img.timeout, want_banner=f"{BANNER} keys=3")
        boot_session(img.qemu_cmd(disk), "qemu after bare-metal", [("GET bare", "metal")],
                     img.timeout, want_banner=f"{BANNER} keys=4")
        print("persist: the bare-metal kv guest reads the Linux guest's store and vice versa")
    # A flipped record byte: the store is ignored as corrupt, as by the bare-metal guest.
    with open(disk, "r+b") as f:
        f.seek(SECTOR + 3)
        byte = f.read(1)
        f.seek(SECTOR + 3)
        f.write(bytes([byte[0] ^ 0x20]))
    boot_session(img.qemu_cmd(disk), "qemu corrupt", [("COUNT", "0")], img.timeout,
                 want_banner=f"{BANNER} keys=0 (corrupt store ignored: bad record checksum)")
    # Someone else's data in sector 0 is not a store: a fresh disk, overwritten by SYNC.
    with open(disk, "r+b") as f:
        f.write(b"not a kv store")
    boot_session(img.qemu_cmd(disk), "qemu foreign", [("SET k v", "OK"), ("SYNC", "OK")],
                 img.timeout, want_banner=f"{BANNER} keys=0 (fresh disk: foreign data)")
    if parse_image(disk)[0] != {"k": "v"}:
        raise Failure("qemu foreign: SYNC did not replace the foreign data with a store")
    print("persist: qemu: kv survives SYNC + power-off and SYNC + REBOOT; corrupt and "
          "foreign disks are refused as the bare-metal guest refuses them")
    try:
        img.require(tandem=True)
    except Skip as e:
        print(f"persist: Tandem half skipped: {e}")
        return
    persist_on(img, tmp, "tandem", img.tandem_cmd)
    print("persist: tandem: kv survives SYNC + power-off")


def boot_log(text):
    """The kernel's lines from 'Linux version' up to (not including) the kv banner."""
    lines = text.split("\n")
    start = next((i for i, l in enumerate(lines) if "Linux version" in l), None)
    end = next((i for i, l in enumerate(lines) if l.startswith(BANNER)), None)
    if start is None or end is None:
        raise Failure("boot log lacks 'Linux version' or the kv banner")
    return lines[start:end]


def comparable(lines):
    return [l for l in lines if not any(re.fullmatch(p, l) for p, _ in HOST_SPECIFIC)]


def scenario_tandem(img, tmp):
    img.require(tandem=True, qemu=True)
    session = [("SET colour blue", "OK"), ("GET colour", "blue"), ("COUNT", "1")]
    qemu_text = boot_session(img.qemu_cmd(fresh_disk(tmp, "q.img")), "qemu", session,
                             img.timeout)
    tandem_text = boot_session(img.tandem_cmd(fresh_disk(tmp, "t.img")), "tandem", session,
                               img.timeout, want_banner=f"{BANNER} keys=0 (fresh disk)")
    q, t = comparable(boot_log(qemu_text)), comparable(boot_log(tandem_text))
    if q != t:
        import difflib
        diff = "\n".join(difflib.unified_diff(q, t, "qemu", "tandem", lineterm=""))
        raise Failure("boot logs differ beyond the HOST_SPECIFIC lines:\n" + diff)
    print(f"tandem: boots to the kv banner, session OK, power-off 0; "
          f"{len(t)} boot log lines equal QEMU's ({len(boot_log(tandem_text)) - len(t)} "
          f"host-specific lines skipped)")


STATE_HASH = re.compile(r"state-hash=([0-9a-f]+) icount=(\d+)")


def run_to(img, extra, label):
    proc = subprocess.run([img.tandem, "run", *extra, "--state-hash"],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=img.timeout)
    m = STATE_HASH.search(proc.stderr.decode(errors="replace"))
    if not m:
        raise Failure(f"{label}: no state-hash (exit {proc.returncode})\n"
                      f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return proc.returncode, m.group(1), int(m.group(2)), proc.stdout


def scenario_determinism(img, tmp, limit, save_at):
    img.require(tandem=True)
    results = []
    for i in (1, 2):
        disk = fresh_disk(tmp, f"det{i}.img")
        status, digest, icount, out = run_to(
            img, [*img.tandem_boot_args(disk), "--max-instructions", str(limit)],
            f"boot {i}")
        if status != 3 or icount != limit:
            raise Failure(f"boot {i}: exit {status} at icount {icount}, want 3 at {limit}")
        results.append((digest, out))
    if results[0] != results[1]:
        raise Failure(f"two boots differ at icount {limit}: {results[0][0]} vs {results[1][0]}")
    if BANNER.encode() not in results[0][1]:
        raise Failure(f"no kv banner within {limit} instructions: raise --det-instructions")
    # Snapshot mid-boot, restore in a fresh process, run to the same limit. The restored
    # process must itself print the kernel log and the banner: the snapshot was taken inside
    # the kernel's boot, before its console came up.
    snap = os.path.join(tmp, "mid.snap")
    disk = fresh_disk(tmp, "det3.img")
    status, digest_a, _, out_a = run_to(
        img, [*img.tandem_boot_args(disk), "--save", snap, "--save-at", str(save_at),
              "--max-instructions", str(limit)], "saving run")
    if digest_a != results[0][0]:
        raise Failure("a run that saved a snapshot ended differently from a plain run")
    status, digest_b, icount, out_b = run_to(
        img, ["--restore", snap, "--disk", disk, "--max-instructions", str(limit)],
        "restored run")
    if digest_b != digest_a or icount != limit:
        raise Failure(f"restored run: {digest_b} at {icount}, want {digest_a} at {limit}")
    if not out_a.endswith(out_b):
        raise Failure("restored run's console is not the tail of the saving run's")
    if b"Linux version" not in out_b or BANNER.encode() not in out_b:
        raise Failure(f"the snapshot at icount {save_at} was not mid-boot: the restored run "
                      f"did not print the kernel log and the banner (adjust --det-save-at)")
    print(f"determinism: state-hash {digest_a} at icount {limit} in every run "
          f"(snapshot at {save_at}, mid-boot, restored in another process)")


def scenario_record(img, tmp):
    img.require(tandem=True)
    # virtual: guest time from the icount alone; wall (the live pair's): idle waits take
    # real time and TIME_ADJUST records keep the guest clock near the host's.
    for time_mode in ("virtual", "wall"):
        record_once(img, tmp, time_mode)


def record_once(img, tmp, time_mode):
    disk = fresh_disk(tmp, f"rec-{time_mode}.img")
    copy = os.path.join(tmp, f"rec-{time_mode}-copy.img")
    shutil.copyfile(disk, copy)
    log = os.path.join(tmp, f"kv-{time_mode}.log")
    cmd = [img.tandem, "record", "--log", log, "--time", time_mode, "--state-hash",
           *img.tandem_boot_args(disk)]
    session = FIRST_BOOT[:8] + [("SYNC", "OK")]
    console = Console(cmd, f"record --time {time_mode}")
    try:
        console.wait_banner(img.timeout)
        console.session(session)
        console.session([("QUIT", "BYE")])
        status = console.wait_exit(img.timeout)
    finally:
        console.kill()
    if status != 0:
        raise Failure(f"record: exit {status}\n{console.dump()}")
    rec = STATE_HASH.search(console.stderr.decode(errors="replace"))
    if not rec:
        raise Failure(f"record: no state-hash\n{console.dump()}")
    replay = subprocess.run([img.tandem, "replay", "--log", log, "--state-hash", 
        *img.tandem_boot_args(copy)], stdin=subprocess.DEVNULL, capture_output=True,
        timeout=img.timeout)
    rep = STATE_HASH.search(replay.stderr.decode(errors="replace"))
    recorded = console.text
    replayed = replay.stdout.decode("latin-1").replace("\r", "")
    if replay.returncode != 0 or not rep or rep.groups() != rec.groups() or replayed != recorded:
        raise Failure(f"replay differs: exit {replay.returncode}, {rep and rep.groups()} vs "
                      f"{rec.groups()}, console equal: {replayed == recorded}\n"
                      f"{replay.stderr.decode(errors='replace')[-2000:]}")
    with open(disk, "rb") as a, open(copy, "rb") as b:
        if a.read() != b.read():
            raise Failure("the replayed disk differs from the recorded one")
    print(f"record --time {time_mode}: replay matches bit for bit (state-hash {rec.group(1)} at "
          f"icount {rec.group(2)}, disk identical)")


def scenario_bad_input(img, tmp):
    img.require(tandem=True)
    huge = os.path.join(tmp, "huge.bin")
    with open(huge, "wb") as f:
        f.truncate((MEM_MIB + 16) << 20)  # larger than all of guest RAM
    unreadable = os.path.join(tmp, "unreadable.bin")
    with open(unreadable, "wb") as f:
        f.write(b"\0" * 4096)
    os.chmod(unreadable, 0)
    missing = os.path.join(tmp, "missing.bin")
    empty = os.path.join(tmp, "empty.bin")
    open(empty, "wb").close()
    too_big = r"(?i)(do|does|did) not fit|doesn.t fit|cannot fit|too (large|big)"
    cases = [
        ("kernel too large for RAM", dict(kernel=huge), too_big),
        ("initrd too large for RAM", dict(initrd=huge), too_big),
        ("kernel missing", dict(kernel=missing), re.escape(missing)),
        ("initrd missing", dict(initrd=missing), re.escape(missing)),
        ("firmware missing", dict(bios=missing), re.escape(missing)),
        ("kernel is a directory", dict(kernel=tmp), re.escape(tmp)),
        ("kernel empty", dict(kernel=empty), re.escape(empty)),
        ("initrd empty", dict(initrd=empty), re.escape(empty)),
    ]
    if os.geteuid() != 0:  # root reads mode-0 files anyway
        cases.append(("kernel unreadable", dict(kernel=unreadable), re.escape(unreadable)))
    for name, kw, pattern in cases:
        proc = subprocess.run([img.tandem, "run", *img.tandem_boot_args(None, **kw),
                               "--max-instructions", "1000"], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=60)
        err = proc.stderr.decode(errors="replace").strip()
        if proc.returncode != 2 or not re.search(pattern, err) or proc.stdout:
            raise Failure(f"{name}: exit {proc.returncode}, stderr {err!r}, "
                          f"stdout {proc.stdout[:200]!r}; want exit 2, an error matching "
                          f"{pattern!r} and no guest output")
        print(f"bad-input: {name}: exit 2: {err.splitlines()[-1]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", required=True,
                    choices=["qemu", "persist", "tandem", "determinism", "record", "bad-input"])
    ap.add_argument("--images", required=True, help="directory with Image and initramfs.cpio")
    ap.add_argument("--bios", default=OPENSBI)
    ap.add_argument("--qemu", default="qemu-system-riscv64")
    ap.add_argument("--tandem")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per boot")
    ap.add_argument("--kv-elf", help="persist: the bare-metal kv guest, to cross-check the "
                                     "on-disk format both ways")
    ap.add_argument("--det-instructions", type=int, default=60_000_000,
                    help="determinism: icount to stop at (past the kv banner, ~26M)")
    ap.add_argument("--det-save-at", type=int, default=18_000_000,
                    help="determinism: snapshot icount, inside the kernel's boot (OpenSBI "
                         "is done by ~10M; the console comes up at ~25M)")
    args = ap.parse_args()
    img = Images(args)
    scenarios = {
        "qemu": lambda tmp: scenario_qemu(img, tmp),
        "persist": lambda tmp: scenario_persist(img, tmp),
        "tandem": lambda tmp: scenario_tandem(img, tmp),
        "determinism": lambda tmp: scenario_determinism(img, tmp, args.det_instructions,
                                                        args.det_save_at),
        "record": lambda tmp: scenario_record(img, tmp),
        "bad-input": lambda tmp: scenario_bad_input(img, tmp),
    }
    return guest_scenario.run("tandem-linux-", scenarios[args.scenario])

if __name__ == "__main__":
    sys.exit(main())
