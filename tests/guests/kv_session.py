#!/usr/bin/env python3
"""Scripted sessions against the kv guest, on QEMU (the reference) and, in diff mode, on
`tandem run` too, with the disk images carried over from one run to the next.

Scenarios:
  basic  1. "kv session": every command and error reply on a fresh (all-zero) disk, ending
            with SYNC, one unsynced SET and QUIT;
         2. "kv survives SYNC + restart": a second boot on the same image finds the synced
            keys (not the unsynced one), changes some and syncs twice;
         3. the image is parsed here (superblock, zlib CRC32s, records) and must hold
            exactly the expected keys;
         4. a store with a flipped record byte is ignored as corrupt, a foreign disk is
            taken as fresh, a SYNC larger than a 4-sector disk answers `ERR disk full`
            and leaves the last store that fitted, and without a disk SYNC answers
            `ERR no disk`;
         5. (diff mode) "kv sleeps while it waits": a session with a 2 s pause in its input
            retires no more instructions on Tandem than one without, give or take
            IDLE_SLACK: waiting is WFI, not a polling loop.
  fill   fills the table to its 3072-key limit (`ERR full`), deletes enough keys to force
         a tombstone compaction, syncs, and checks a restart and the image.

Every run's console output must equal the expected replies exactly; in diff mode QEMU and
Tandem must also agree with each other, exit with the same status and leave identical
images. Exits 77 (CTest SKIP_RETURN_CODE) when QEMU or, in diff mode, tandem is missing.
Stdlib only.
"""
import argparse
import difflib
import os
import shutil
import re
import struct
import subprocess
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_guest  # noqa: E402  (qemu_cmd, tandem_cmd, run, disk_pattern)

SKIP = 77
DISK_BYTES = 1 << 20
SECTOR = 512
SB_FORMAT = "<QIIIIQI"  # magic, version, count, record bytes, record CRC, generation, header CRC
SB_MAGIC = int.from_bytes(b"TANDEMKV", "little")
BANNER = "tandem-kv ready"  # every boot prints it before it reads the console
KEY32 = "k" * 32
VALUE200 = "x" * 200


class Failure(Exception):
    pass


def session(commands):
    """(input bytes, [expected reply lines]) from a list of (command line, reply)."""
    text = "".join(line + "\n" for line, _ in commands)
    return text.encode("latin-1"), [reply for _, reply in commands]


# 1. A fresh disk: every command, every error reply.
FIRST_BOOT = [
    ("COUNT", "0"),
    ("GET missing", "NOT_FOUND"),
    ("SET user:1 alice", "OK"),
    ("SET user:2 bob smith", "OK"),
    ("SET greeting hello,   world!", "OK"),
    ("GET user:2", "bob smith"),
    ("GET greeting", "hello,   world!"),
    ("SET user:1 alice2", "OK"),
    ("GET user:1", "alice2"),
    ("COUNT", "3"),
    ("DEL user:2", "OK"),
    ("DEL user:2", "NOT_FOUND"),
    ("GET user:2", "NOT_FOUND"),
    ("SET crlf yes\r", "OK"),
    ("GET crlf\r", "yes"),
    (f"SET {KEY32} v", "OK"),
    (f"GET {KEY32}", "v"),
    (f"SET {KEY32}k v", "ERR key too long"),
    (f"GET {KEY32}k", "ERR key too long"),
    (f"SET maxval {VALUE200}", "OK"),
    ("GET maxval", VALUE200),
    (f"SET bigval {'y' * 201}", "ERR value too long"),
    ("z" * 300, "ERR line too long"),
    ("FROB x", "ERR unknown command"),
    ("set a b", "ERR unknown command"),
    ("", "ERR empty line"),
    ("SET onlykey", "ERR usage: SET key value"),
    ("SET onlykey ", "ERR usage: SET key value"),
    ("GET", "ERR expected one key"),
    ("GET a b", "ERR expected one key"),
    ("SET tab\tkey v", "ERR bad key"),
    ("SET ctl v\x01", "ERR bad value"),
    ("COUNT now", "ERR unexpected argument"),
    ("SYNC", "OK"),
    ("COUNT", "5"),
    ("SET unsynced 1", "OK"),
    ("QUIT", "BYE"),
]
FIRST_BANNER = "tandem-kv ready keys=0 (fresh disk)"

# 2. The same disk again.
SECOND_BOOT = [
    ("COUNT", "5"),
    ("GET user:1", "alice2"),
    ("GET greeting", "hello,   world!"),
    ("GET crlf", "yes"),
    (f"GET {KEY32}", "v"),
    ("GET maxval", VALUE200),
    ("GET user:2", "NOT_FOUND"),
    ("GET unsynced", "NOT_FOUND"),
    ("DEL greeting", "OK"),
    ("SET new value with spaces", "OK"),
    ("SYNC", "OK"),
    ("SYNC", "OK"),
    ("QUIT", "BYE"),
]
SECOND_BANNER = "tandem-kv ready keys=5"
AFTER_SECOND = {"user:1": "alice2", "crlf": "yes", KEY32: "v", "maxval": VALUE200,
                "new": "value with spaces"}

SHORT_CHECK = [("COUNT", "0"), ("QUIT", "BYE")]

# A 4-sector disk: the superblock and three record sectors hold seven 203-byte records.
TINY_DISK_BYTES = 4 * SECTOR
TINY_STORE = {f"k{i}": chr(ord("a") + i) * 200 for i in range(1, 8)}
TINY_DISK = ([(f"SET {k} {v}", "OK") for k, v in TINY_STORE.items()] +
             [("SYNC", "OK"),
              (f"SET k8 {'h' * 200}", "OK"),
              ("SYNC", "ERR disk full"),
              ("DEL k8", "OK"),
              ("SYNC", "OK"),
              ("QUIT", "BYE")])
NO_DISK = [("SET a 1", "OK"), ("SYNC", "ERR no disk"), ("GET a", "1"), ("QUIT", "BYE")]

FILL_LIMIT = 3072
# A polling loop would retire tens of millions of instructions in the 2 s pause even under
# ASan; the whole session takes about 1.2 million.
IDLE_PAUSE_S = 2.0
IDLE_SLACK = 2_000_000


def fill_sessions():
    """The fill scenario: (first commands, second commands, expected store after both)."""
    store = {}
    first = []
    for i in range(FILL_LIMIT):
        # Short values keep the input small (QEMU takes it a byte per main-loop round);
        # every 97th is a full 200 bytes.
        key, value = f"key{i:05d}", (f"{i:05d}-" + "v" * 194 if i % 97 == 0 else str(i))
        first.append((f"SET {key} {value}", "OK"))
        store[key] = value
    first += [("SET onemore x", "ERR full"),
              (f"COUNT", str(FILL_LIMIT)),
              ("SET key00007 replaced while full", "OK"),
              ("SYNC", "OK")]
    store["key00007"] = "replaced while full"
    # 1500 deletions: more tombstones than a quarter of the 4096 slots -> compaction.
    for i in range(0, 3000, 2):
        first.append((f"DEL key{i:05d}", "OK"))
        del store[f"key{i:05d}"]
    first += [("GET key00002", "NOT_FOUND"),
              ("GET key00003", store["key00003"]),
              ("GET key02999", store["key02999"]),
              ("SET key00000 back", "OK"),
              ("COUNT", str(len(store) + 1)),
              ("SYNC", "OK"),
              ("QUIT", "BYE")]
    store["key00000"] = "back"
    second = [("COUNT", str(len(store))),
              ("GET key00000", "back"),
              ("GET key00004", "NOT_FOUND"),
              ("GET key00007", "replaced while full"),
              ("GET key03071", store["key03071"]),
              ("QUIT", "BYE")]
    return first, second, store


def parse_image(path):
    """The store in a kv disk image, checked the way the guest checks it."""
    with open(path, "rb") as f:
        image = f.read()
    magic, version, count, data_bytes, data_crc, generation, header_crc = \
        struct.unpack_from(SB_FORMAT, image)
    if magic != SB_MAGIC or version != 1:
        raise Failure(f"image: bad magic/version {magic:#x}/{version}")
    if zlib.crc32(image[:32]) != header_crc:
        raise Failure("image: superblock CRC32 mismatch")
    records = image[SECTOR:SECTOR + data_bytes]
    if zlib.crc32(records) != data_crc:
        raise Failure("image: record CRC32 mismatch")
    store, at = {}, 0
    for _ in range(count):
        key_len, value_len = records[at], records[at + 1]
        key = records[at + 2:at + 2 + key_len].decode("ascii")
        value = records[at + 2 + key_len:at + 2 + key_len + value_len].decode("ascii")
        if key in store:
            raise Failure(f"image: duplicate key {key}")
        store[key] = value
        at += 2 + key_len + value_len
    if at != data_bytes:
        raise Failure(f"image: {data_bytes - at} trailing record bytes")
    return store, generation


def check_store(path, want, want_generation):
    store, generation = parse_image(path)
    if store != want:
        missing = sorted(set(want) - set(store))[:5]
        extra = sorted(set(store) - set(want))[:5]
        wrong = sorted(k for k in set(want) & set(store) if want[k] != store[k])[:5]
        raise Failure(f"image holds the wrong store: missing {missing}, extra {extra}, "
                      f"wrong values {wrong}")
    if generation != want_generation:
        raise Failure(f"image generation {generation}, want {want_generation}")


def image_difference(a, b):
    """Where two disk images part: sizes, the first differing byte and its sector, and how
    many sectors differ (so a rare mismatch says what it was)."""
    if len(a) != len(b):
        return f"sizes {len(a)} and {len(b)} bytes"
    first = next(i for i in range(len(a)) if a[i] != b[i])
    sectors = sum(1 for s in range(0, len(a), 512) if a[s:s + 512] != b[s:s + 512])
    return (f"first at byte {first} (sector {first // 512}: QEMU {a[first]:#04x}, Tandem "
            f"{b[first]:#04x}), {sectors} of {len(a) // 512} sectors differ")


class Runner:
    def __init__(self, args, tmp):
        self.args = args
        self.machines = ["qemu"] + (["tandem"] if args.mode == "diff" else [])
        self.disks = {m: os.path.join(tmp, f"{m}.img") for m in self.machines}

    def write_disks(self, data):
        for path in self.disks.values():
            with open(path, "wb") as f:
                f.write(data)

    def step(self, name, banner, commands, with_disk=True):
        """Runs one session on every machine; checks replies, statuses and images."""
        stdin, replies = session(commands)
        want = "\n".join([banner] + replies) + "\n"
        outputs = {}
        for machine in self.machines:
            disk = self.disks[machine] if with_disk else None
            if machine == "qemu":
                cmd = run_guest.qemu_cmd(self.args, self.args.guest, disk)
            else:
                cmd = run_guest.tandem_cmd(self.args, self.args.guest, disk)
            status, out, err = run_guest.run(cmd, stdin, self.args.timeout, machine, BANNER)
            outputs[machine] = out
            if out != want:
                diff = "".join(difflib.unified_diff(
                    want.splitlines(keepends=True), out.splitlines(keepends=True),
                    "expected", machine))
                raise Failure(f"{name}: {machine} replies differ from the expected ones:\n"
                              f"{diff}\n--- {machine} stderr ---\n{err}")
            if status != 0:
                raise Failure(f"{name}: {machine} exit status {status}, want 0 (QUIT)\n{err}")
        if len(self.machines) == 2 and with_disk:
            images = [open(self.disks[m], "rb").read() for m in self.machines]
            if images[0] != images[1]:
                raise Failure(f"{name}: the disk images of QEMU and Tandem differ: "
                              f"{image_difference(images[0], images[1])}")
        print(f"ok {name} ({len(commands)} commands on {', '.join(self.machines)})")
        return outputs

    def check_images(self, name, want, generation):
        for machine, path in self.disks.items():
            check_store(path, want, generation)
        print(f"ok {name}")


def tandem_instructions(args, parts, pause_s):
    """Runs the kv guest on Tandem (no disk), feeding `parts` with `pause_s` between them
    (the first once the banner is out); returns the instructions it retired (from --stats)."""
    cmd = [args.tandem, "run", "--stats", args.guest]
    machine = run_guest.Machine(cmd, args.timeout, "tandem")
    machine.wait_for(BANNER)
    for part in parts[:-1]:
        machine.feed(part)
        time.sleep(pause_s)
    machine.feed(parts[-1])
    status, out, err = machine.finish()
    match = re.search(r"instructions=(\d+)", err)
    if status != 0 or not match:
        raise Failure(f"tandem run --stats failed (status {status}):\n{out}\n{err}")
    return int(match.group(1))


def idle_is_free(runner):
    parts = [b"SET a 1\nGET a\n", b"COUNT\nQUIT\n"]
    straight = tandem_instructions(runner.args, [b"".join(parts)], 0)
    paused = tandem_instructions(runner.args, parts, IDLE_PAUSE_S)
    if paused > straight + IDLE_SLACK:
        raise Failure(f"kv retired {paused} instructions with a {IDLE_PAUSE_S}s pause in its "
                      f"input, {straight} without: it polls instead of sleeping in WFI")
    print(f"ok kv sleeps while it waits ({straight} instructions straight, {paused} with a "
          f"{IDLE_PAUSE_S}s pause)")


def basic(runner):
    runner.write_disks(bytes(DISK_BYTES))
    runner.step("kv session", FIRST_BANNER, FIRST_BOOT)
    runner.step("kv survives SYNC + restart", SECOND_BANNER, SECOND_BOOT)
    # Two SYNCs with changes in between (the second of the second boot had none).
    runner.check_images("kv image holds exactly the synced store", AFTER_SECOND, 2)

    image = bytearray(open(runner.disks["qemu"], "rb").read())
    image[SECTOR + 3] ^= 0x01
    runner.write_disks(bytes(image))
    runner.step("kv ignores a store with a bad record checksum",
                "tandem-kv ready keys=0 (corrupt store ignored: bad record checksum)",
                SHORT_CHECK)
    runner.write_disks(run_guest.disk_pattern(DISK_BYTES))
    runner.step("kv takes a foreign disk as fresh",
                "tandem-kv ready keys=0 (fresh disk: foreign data)", SHORT_CHECK)
    runner.write_disks(bytes(TINY_DISK_BYTES))
    runner.step("kv refuses a SYNC that does not fit the disk", FIRST_BANNER, TINY_DISK)
    runner.check_images("kv tiny image holds the last store that fitted", TINY_STORE, 2)
    runner.step("kv without a disk", "tandem-kv ready keys=0 (no disk)", NO_DISK,
                with_disk=False)
    if "tandem" in runner.machines:
        idle_is_free(runner)


def fill(runner):
    first, second, store = fill_sessions()
    runner.write_disks(bytes(DISK_BYTES))
    runner.step("kv fills to its limit, compacts and syncs", FIRST_BANNER, first)
    runner.check_images("kv image after the fill", store, 2)
    runner.step("kv reloads a large store", f"tandem-kv ready keys={len(store)}", second)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["qemu", "diff"], required=True)
    ap.add_argument("--scenario", choices=["basic", "fill"], default="basic")
    ap.add_argument("--guest", required=True)
    ap.add_argument("--qemu", default="qemu-system-riscv64")
    ap.add_argument("--tandem")
    ap.add_argument("--timeout", type=int, default=120, help="seconds per run")
    args = ap.parse_args()
    args.rng = False

    if not os.path.exists(args.guest):
        print(f"guest not built: {args.guest}")
        return 1
    if shutil.which(args.qemu) is None:
        print(f"SKIP: {args.qemu} not installed")
        return SKIP
    if args.mode == "diff" and not (args.tandem and os.access(args.tandem, os.X_OK)):
        print(f"SKIP: tandem binary not built ({args.tandem})")
        return SKIP
    with tempfile.TemporaryDirectory(prefix="tandem-kv-") as tmp:
        runner = Runner(args, tmp)
        try:
            {"basic": basic, "fill": fill}[args.scenario](runner)
        except Failure as e:
            print(f"FAIL {e}")
            return 1
    print(f"PASS: kv {args.scenario} scenario on {' and '.join(runner.machines)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
