#!/usr/bin/env python3
"""The Debian guest (guest/debian: an ext4 root image of unmodified Debian trixie riscv64
packages, and its kernel built with guest/linux/debian.config) booted under OpenSBI on QEMU
and on `tandem run --bios --kernel --disk`. Every scenario boots a private copy of the image,
so the built one stays pristine.

Scenarios (--scenario, one CTest test each):
  qemu-shell     boots to the shell prompt; `uname -a` names Linux 6.1 riscv64; the
                 /proc/cpuinfo isa line starts rv64imafdc; busybox applets (ls, awk, sed,
                 sha256sum, wc, arithmetic) give exact answers; `poweroff` exits QEMU with 0.
  qemu-redis     tandem.services=redis: redis-server (appendonly, appendfsync always, data in
                 /var/lib/redis on the root disk) answers redis-cli SET/GET/INCR, takes 3000
                 keys through `redis-cli --pipe`, SHUTDOWN; a second boot of the same image
                 finds every key and the counter.
  qemu-sqlite    sqlite3 creates a database on the root disk, inserts and queries; a second
                 boot queries the same rows.
  qemu-bad-image a corrupt image (superblock zeroed): the kernel says it cannot mount the
                 root filesystem and never runs init.
  recipe         the image recipe's bad input: a cached .deb that differs from the SHA-256 in
                 packages.lock stops guest/debian/build.sh with exit 4 and a message naming
                 the file; a lock pinning a version the index lacks stops it with exit 3; no
                 image is written in either case. Runs offline on a copy of the apt cache.
  tandem-root    Tandem boots the kernel, which mounts the ext4 root from virtio-blk; a missing
                 disk image is refused with exit 2 naming the file, a corrupt one as on QEMU.
  tandem-shell, tandem-redis
                 the qemu-shell / qemu-redis sessions on `tandem run`.
  tandem-determinism
                 two `tandem run` boots reach the same state hash at the same icount, past
                 the shell prompt; a snapshot saved mid-boot and restored in another process
                 ends with the same hash.
  tandem-replay  an interactive session (boot with Redis, redis-cli ping/set/incr typed at
                 the prompt, poweroff) under `tandem record` replays bit for bit: console,
                 state hash at the same icount, disk.

Exits 77 (CTest SKIP_RETURN_CODE) with a SKIP line when the images are not built, QEMU or
OpenSBI is missing, or (tandem-*) tandem is missing. Stdlib only.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time

import guest_scenario  # same directory
from guest_scenario import Failure, Skip
from linux_boot_test import Console, STATE_HASH
MEM_MIB = 256
OPENSBI = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin"
APPEND = "root=/dev/vda rw console=ttyS0 printk.time=0"
# QEMU's hart without the hypervisor extension and Sstc, nearer the rv64gc hart Tandem has.
QEMU_CPU = "rv64,h=false,sstc=false"
READY = "tandem-debian: ready"
# busybox's line editor follows its prompt with a cursor position query (ESC [ 6 n).
PROMPT = re.compile(r"root@tandem:[^\n]*# (\x1b\[6n)?$")
# The end-of-command marker: the shell expands it, the echoed command line does not match.
MARK_CMD = 'echo "@@$?@@$((6*7))"'
MARK = re.compile(r"@@(\d+)@@42\n")
PIPE_KEYS = 3000  # --pipe-keys
KERNEL_RELEASE = r"6\.1\.\S+"  # uname -r; --kernel-release changes it


class Images:
    def __init__(self, args):
        self.dir = args.images
        self.kernel = args.kernel or os.path.join(self.dir, "kernel", "Image")
        self.initrd = args.initrd
        self.image = os.path.join(self.dir, "debian.img")
        self.bios, self.qemu, self.tandem = args.bios, args.qemu, args.tandem
        self.timeout = args.timeout

    def require(self, qemu=False, tandem=False):
        for path, what in ((self.kernel, "kernel Image"), (self.image, "root image")):
            if not os.path.exists(path):
                raise Skip(f"Debian guest {what} not built ({path}); `make debian-guest`")
        if not os.path.exists(self.bios):
            raise Skip(f"OpenSBI firmware missing ({self.bios}); install the opensbi package")
        if qemu and shutil.which(self.qemu) is None:
            raise Skip(f"{self.qemu} not installed")
        if tandem and not (self.tandem and os.access(self.tandem, os.X_OK)):
            raise Skip(f"tandem binary not built ({self.tandem})")

    def copy(self, tmp, name):
        """A private copy of the image (sparse), so boots never change the built one."""
        path = os.path.join(tmp, name)
        subprocess.run(["cp", "--sparse=always", self.image, path], check=True)
        return path

    def qemu_cmd(self, disk, services=None):
        append = APPEND + (f" tandem.services={services}" if services else "")
        initrd = ["-initrd", self.initrd] if self.initrd else []
        return [self.qemu, "-M", "virt", "-cpu", QEMU_CPU, "-m", f"{MEM_MIB}M",
                "-bios", self.bios, "-kernel", self.kernel, *initrd, "-append", append,
                "-display", "none", "-monitor", "none", "-serial", "stdio",
                "-global", "virtio-mmio.force-legacy=false",
                "-drive", f"file={disk},if=none,format=raw,id=d0",
                "-device", "virtio-blk-device,drive=d0", "-device", "virtio-rng-device"]

    def tandem_boot_args(self, disk, services=None):
        append = APPEND + (f" tandem.services={services}" if services else "")
        initrd = ["--initrd", self.initrd] if self.initrd else []
        return ["--mem", str(MEM_MIB), "--bios", self.bios, "--kernel", self.kernel, *initrd,
                "--append", append, "--disk", disk]

    def tandem_cmd(self, disk, services=None):
        return [self.tandem, "run", *self.tandem_boot_args(disk, services)]


# ---- talking to the shell on the console ----------------------------------------------------

def wait_for(console, pattern, timeout, what):
    """Consumes console text up to the end of the first match of `pattern`."""
    deadline = time.monotonic() + timeout
    while True:
        m = pattern.search(console.text, console.pos)
        if m:
            console.pos = m.end()
            return m
        if time.monotonic() > deadline:
            raise Failure(f"{console.label}: no {what} within {timeout}s\n{console.dump()}")
        if not console._receive(deadline):
            raise Failure(f"{console.label}: console closed before {what}\n{console.dump()}")


def boot_to_shell(console, timeout):
    """Waits for init's ready line and the prompt; widens the tty so busybox's line editor
    never wraps a long command."""
    wait_for(console, re.compile(re.escape(READY) + r"[^\n]*\n"), timeout, "init ready line")
    wait_for(console, PROMPT, timeout, "shell prompt")
    sh(console, "stty cols 1000 rows 50")


def sh(console, command, timeout=120, status=0):
    """Runs one shell command line; returns its output (the echoed line removed). Fails
    unless it exits with `status`."""
    console.proc.stdin.write(f"{command}; {MARK_CMD}\n".encode())
    console.proc.stdin.flush()
    start = console.pos
    m = wait_for(console, MARK, timeout, f"end of {command!r}")
    text = console.text[start:m.start()]
    output = text.split("\n", 1)[1] if "\n" in text else ""
    if int(m.group(1)) != status:
        raise Failure(f"{console.label}: {command!r} exited {m.group(1)}, want {status}:\n"
                      f"{output}\n{console.dump()}")
    wait_for(console, PROMPT, timeout, "shell prompt")
    return output


def expect(label, what, got, want):
    if got != want:
        raise Failure(f"{label}: {what}: got {got!r}, want {want!r}")


def power_off(console, timeout):
    console.proc.stdin.write(b"poweroff\n")
    console.proc.stdin.flush()
    status = console.wait_exit(timeout)
    if status != 0:
        raise Failure(f"{console.label}: exit status {status} after poweroff\n{console.dump()}")
    if "tandem-debian: powering off" not in console.text:
        raise Failure(f"{console.label}: exited without the poweroff line\n{console.dump()}")


def session(cmd, label, timeout, body):
    console = Console(cmd, label)
    try:
        boot_to_shell(console, timeout)
        result = body(console)
        power_off(console, timeout)
        return result, console.text
    finally:
        console.kill()


# ---- sessions (the same on QEMU and Tandem) -------------------------------------------------

def shell_checks(console):
    label = console.label
    uname = sh(console, "uname -a").strip()
    if not re.fullmatch(rf"Linux tandem {KERNEL_RELEASE} #1 .* riscv64 GNU/Linux", uname):
        raise Failure(f"{label}: uname -a: {uname!r}")
    isa = sh(console, "grep -m1 '^isa' /proc/cpuinfo").strip()
    if not re.fullmatch(r"isa\s*:\s*rv64imafdc\S*", isa):
        raise Failure(f"{label}: /proc/cpuinfo: {isa!r}, want an isa line rv64imafdc...")
    expect(label, "hostname", sh(console, "hostname"), "tandem\n")
    expect(label, "os-release", sh(console, ". /etc/os-release; echo $VERSION_CODENAME"),
           "trixie\n")
    expect(label, "shell arithmetic", sh(console, "echo $((7 * 6 + 1))"), "43\n")
    expect(label, "awk/seq", sh(console, "seq 1 100 | awk '{s += $1} END {print s}'"), "5050\n")
    expect(label, "sed", sh(console, "echo debian-riscv64 | sed 's/-/ on /'"),
           "debian on riscv64\n")
    expect(label, "sha256sum", sh(console, "printf abc | sha256sum"),
           "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  -\n")
    expect(label, "files on the root disk",
           sh(console, "echo persisted > /root/note && sync && cat /root/note && wc -c < /root/note"),
           "persisted\n10\n")
    expect(label, "ls", sh(console, "ls -1d /usr/bin/redis-server /usr/bin/sqlite3 /bin/busybox"),
           "/bin/busybox\n/usr/bin/redis-server\n/usr/bin/sqlite3\n")
    root = sh(console, "awk '$2 == \"/\" {print $1, $3, substr($4, 1, 2)}' /proc/mounts")
    if root not in ("/dev/root ext4 rw\n", "/dev/vda ext4 rw\n"):  # root=, or an initramfs
        raise Failure(f"{label}: / is mounted as {root!r}, want ext4 rw from the disk")
    expect(label, "id", sh(console, "id -un; id redis"),
           "root\nuid=101(redis) gid=101(redis) groups=101(redis)\n")
    # Floating point in a Debian binary: sqlite3 computes in doubles.
    expect(label, "floating point", sh(console, "sqlite3 :memory: 'select round(1.0/3, 6), sqrt(2.0) * sqrt(2.0) > 1.9999'"),
           "0.333333|1\n")
    mem = sh(console, "free -k | awk '/^Mem:/ {print $2, $3}'").split()
    return {"total_kib": int(mem[0]), "used_kib": int(mem[1])}


def redis_first_boot(console):
    label = console.label
    cli = "redis-cli --raw"  # on a tty it would quote strings and tag integers
    expect(label, "PING", sh(console, f"{cli} ping"), "PONG\n")
    expect(label, "SET", sh(console, f"{cli} set greeting 'hello from debian'"), "OK\n")
    expect(label, "GET", sh(console, f"{cli} get greeting"), "hello from debian\n")
    expect(label, "INCR", sh(console, f"{cli} incr visits; {cli} incr visits; {cli} incr visits"),
           "1\n2\n3\n")
    expect(label, "AOF settings",
           sh(console, f"{cli} config get appendonly | tail -1; {cli} config get appendfsync | tail -1; "
                       f"{cli} config get dir | tail -1"),
           "yes\nalways\n/var/lib/redis\n")
    # The mass-insertion protocol, generated in the guest.
    out = sh(console,
             f"seq 1 {PIPE_KEYS} | awk '{{k = \"key:\" $1; v = \"value-\" $1; "
             f"printf \"*3\\r\\n$3\\r\\nSET\\r\\n$%d\\r\\n%s\\r\\n$%d\\r\\n%s\\r\\n\", "
             f"length(k), k, length(v), v}}' | {cli} --pipe", timeout=600)
    if f"errors: 0, replies: {PIPE_KEYS}" not in out:
        raise Failure(f"{label}: redis-cli --pipe: {out!r}")
    expect(label, "DBSIZE", sh(console, f"{cli} dbsize"), f"{PIPE_KEYS + 2}\n")
    middle = PIPE_KEYS // 2 + 1
    expect(label, "GET piped", sh(console, f"{cli} get key:{middle}"), f"value-{middle}\n")
    # SHUTDOWN: the server exits; its AOF is on the root disk.
    sh(console, f"{cli} shutdown; while [ -e /run/redis/redis-server.pid ] && "
                f"kill -0 $(cat /run/redis/redis-server.pid) 2>/dev/null; do sleep 0.1; done")
    aof = sh(console, "ls /var/lib/redis/appendonlydir | grep -c aof")
    if int(aof.strip() or 0) < 2:
        raise Failure(f"{label}: no AOF files in /var/lib/redis/appendonlydir: {aof!r}")


def redis_second_boot(console):
    label = console.label
    cli = "redis-cli --raw"  # on a tty it would quote strings and tag integers
    expect(label, "DBSIZE after reboot", sh(console, f"{cli} dbsize"), f"{PIPE_KEYS + 2}\n")
    expect(label, "GET after reboot", sh(console, f"{cli} get greeting"), "hello from debian\n")
    expect(label, "piped keys after reboot",
           sh(console, f"{cli} get key:1; {cli} get key:{PIPE_KEYS}"),
           f"value-1\nvalue-{PIPE_KEYS}\n")
    expect(label, "INCR after reboot", sh(console, f"{cli} incr visits"), "4\n")
    used, rss = sh(console, "free -k | awk '/^Mem:/ {print $3}'; awk '/VmRSS/ {print $2}' "
                            "/proc/$(cat /run/redis/redis-server.pid)/status").split()
    return int(used), int(rss)


def redis_on(img, tmp, label, cmd_for):
    disk = img.copy(tmp, f"{label}-redis.img")
    session(cmd_for(disk, "redis"), f"{label} redis boot 1", img.timeout, redis_first_boot)
    (used, rss), _ = session(cmd_for(disk, "redis"), f"{label} redis boot 2", img.timeout,
                             redis_second_boot)
    print(f"{label}: redis SET/GET/INCR, --pipe of {PIPE_KEYS} keys, SHUTDOWN; the second "
          f"boot finds all {PIPE_KEYS + 2} keys; memory with redis-server running: {used} KiB "
          f"used of {MEM_MIB} MiB (redis-server RSS {rss} KiB)")


# ---- scenarios ------------------------------------------------------------------------------

def scenario_qemu_shell(img, tmp):
    img.require(qemu=True)
    disk = img.copy(tmp, "shell.img")
    mem, text = session(img.qemu_cmd(disk), "qemu", img.timeout, shell_checks)
    if "Linux version 6.1" not in text:
        raise Failure("qemu: no 'Linux version 6.1' in the boot log")
    print(f"qemu-shell: prompt, uname, isa rv64imafdc, busybox applets, poweroff OK; "
          f"memory {mem['used_kib']} KiB used of {mem['total_kib']} KiB")


def scenario_qemu_redis(img, tmp):
    img.require(qemu=True)
    redis_on(img, tmp, "qemu", img.qemu_cmd)


def scenario_qemu_sqlite(img, tmp):
    img.require(qemu=True)
    disk = img.copy(tmp, "sqlite.img")
    db = "/root/test.db"

    def first(console):
        sh(console, f"sqlite3 {db} 'create table kv(k text primary key, v integer)'")
        sh(console, f"sqlite3 {db} \"insert into kv values ('alpha', 1), ('beta', 2)\"")
        sh(console, f"seq 1 500 | awk '{{print \"insert into kv values (\\x27n\" $1 \"\\x27, \" $1 \");\"}}' "
                    f"| sqlite3 {db}")
        expect(console.label, "query", sh(console, f"sqlite3 {db} 'select count(*), sum(v) from kv'"),
               "502|125253\n")
        expect(console.label, "query", sh(console, f"sqlite3 {db} \"select v from kv where k = 'beta'\""),
               "2\n")

    def second(console):
        expect(console.label, "after reboot",
               sh(console, f"sqlite3 {db} 'select count(*), sum(v) from kv'"), "502|125253\n")
        expect(console.label, "integrity", sh(console, f"sqlite3 {db} 'pragma integrity_check'"),
               "ok\n")

    session(img.qemu_cmd(disk), "qemu sqlite boot 1", img.timeout, first)
    session(img.qemu_cmd(disk), "qemu sqlite boot 2", img.timeout, second)
    print("qemu-sqlite: create, insert 502 rows, query; the same rows after a reboot")


def corrupt_copy(img, tmp):
    disk = img.copy(tmp, "corrupt.img")
    with open(disk, "r+b") as f:  # the ext4 superblock: bytes 1024..2047
        f.seek(1024)
        f.write(b"\0" * 1024)
    return disk


NO_ROOT = re.compile(r"Kernel panic - not syncing: VFS: Unable to mount root fs[^\n]*\n")


def expect_no_root(console, timeout):
    try:
        wait_for(console, NO_ROOT, timeout, "'Unable to mount root fs' panic")
        if READY in console.text:
            raise Failure(f"{console.label}: init ran on a corrupt root\n{console.dump()}")
    finally:
        console.kill()


def scenario_qemu_bad_image(img, tmp):
    img.require(qemu=True)
    expect_no_root(Console(img.qemu_cmd(corrupt_copy(img, tmp)), "qemu corrupt image"),
                   img.timeout)
    print("qemu-bad-image: a zeroed superblock: the kernel refuses to mount root, init never runs")


def scenario_recipe(img, tmp, build_sh, apt_cache):
    lists = os.path.join(apt_cache, "state", "lists")
    archives = os.path.join(apt_cache, "archives")
    if not os.path.isdir(lists) or not any(f.endswith("Packages") for f in os.listdir(lists)):
        raise Skip(f"no apt index in {apt_cache}: build the guest once (`make debian-guest`)")
    lock_path = os.path.join(os.path.dirname(build_sh), "packages.lock")
    with open(lock_path) as f:
        pins = [l.split() for l in f if l.strip() and not l.startswith("#")]
    # A copy of the cache: hard links for the index and the untouched .debs.
    cache = os.path.join(tmp, "apt")
    os.makedirs(os.path.join(cache, "state"))
    shutil.copytree(lists, os.path.join(cache, "state", "lists"), copy_function=os.link)
    shutil.copytree(archives, os.path.join(cache, "archives"), copy_function=os.link)
    name, version, arch, _ = next(p for p in pins if p[0] == "sqlite3")
    deb = os.path.join(cache, "archives", f"{name}_{version.replace(':', '%3a')}_{arch}.deb")
    if not os.path.exists(deb):
        raise Skip(f"{deb} not cached: build the guest once (`make debian-guest`)")
    data = bytearray(open(deb, "rb").read())
    data[len(data) // 2] ^= 0x01
    os.unlink(deb)  # never write through the hard link into the real cache
    with open(deb, "wb") as f:
        f.write(data)
    env = dict(os.environ, TANDEM_DEBIAN_CACHE=cache, TANDEM_DEBIAN_OFFLINE="1")

    def build(label, want_status, want_message, **extra):
        out = os.path.join(tmp, f"out-{label}")
        proc = subprocess.run(["bash", build_sh, out], env=dict(env, **extra),
                              capture_output=True, text=True, timeout=600)
        err = proc.stderr
        if proc.returncode != want_status or not re.search(want_message, err):
            raise Failure(f"recipe {label}: exit {proc.returncode}, stderr:\n{err[-3000:]}\n"
                          f"want exit {want_status} and a message matching {want_message!r}")
        if os.path.exists(os.path.join(out, "debian.img")):
            raise Failure(f"recipe {label}: an image was written despite the error")
        print(f"recipe: {label}: exit {want_status}: "
              f"{[l for l in err.splitlines() if l.startswith('debian-guest:')][-1]}")

    build("tampered .deb", 4, re.escape(deb) + r": SHA-256 [0-9a-f]{64}, but .* pins [0-9a-f]{64}: "
          r"the cached package is corrupt or was tampered with")
    # A lock pinning a version the archive index does not have (offline: the cached index).
    os.unlink(deb)
    bad_lock = os.path.join(tmp, "bad.lock")
    with open(bad_lock, "w") as f:
        for p in pins:
            if p[0] == "sqlite3":
                p = [p[0], "9.9.9-1", p[2], "0" * 64]
            f.write(" ".join(p) + "\n")
    build("missing version", 3, r"apt could not fetch the pinned packages .* run "
          r"guest/debian/lock\.sh", TANDEM_DEBIAN_LOCK=bad_lock)
    build("missing lock", 2, r"package lock .* missing",
          TANDEM_DEBIAN_LOCK=os.path.join(tmp, "nonexistent.lock"))


def scenario_tandem_root(img, tmp):
    img.require(tandem=True)
    missing = os.path.join(tmp, "missing.img")
    proc = subprocess.run([img.tandem, "run", *img.tandem_boot_args(missing),
                           "--max-instructions", "1000"], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=60)
    err = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 2 or missing not in err or proc.stdout:
        raise Failure(f"missing disk: exit {proc.returncode}, stderr {err!r}; want exit 2 "
                      f"naming {missing} and no guest output")
    print(f"tandem-root: missing image: exit 2: {err.splitlines()[-1]}")
    expect_no_root(Console(img.tandem_cmd(corrupt_copy(img, tmp)), "tandem corrupt image"),
                   img.timeout)
    print("tandem-root: corrupt image: the kernel refuses to mount root, init never runs")
    console = Console(img.tandem_cmd(img.copy(tmp, "root.img")), "tandem root")
    try:
        wait_for(console, re.compile(r"EXT4-fs \(vda\): mounted filesystem[^\n]*\n"),
                 img.timeout, "ext4 root mount")
        wait_for(console, re.compile(r"Run /sbin/init as init process\n"), img.timeout,
                 "init start")
    finally:
        console.kill()
    print("tandem-root: the kernel mounts the ext4 root from virtio-blk and starts /sbin/init")


def scenario_tandem_shell(img, tmp):
    img.require(tandem=True)
    mem, _ = session(img.tandem_cmd(img.copy(tmp, "shell.img")), "tandem", img.timeout,
                     shell_checks)
    print(f"tandem-shell: prompt, uname, isa, busybox applets, poweroff OK; memory "
          f"{mem['used_kib']} KiB used of {mem['total_kib']} KiB")


def scenario_tandem_redis(img, tmp):
    img.require(tandem=True)
    redis_on(img, tmp, "tandem", img.tandem_cmd)


def run_to(img, extra, label):
    proc = subprocess.run([img.tandem, "run", *extra, "--state-hash"],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=img.timeout * 4)
    m = STATE_HASH.search(proc.stderr.decode(errors="replace"))
    if not m:
        raise Failure(f"{label}: no state-hash (exit {proc.returncode})\n"
                      f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return proc.returncode, m.group(1), int(m.group(2)), proc.stdout


def scenario_tandem_determinism(img, tmp, limit, save_at):
    img.require(tandem=True)
    results = []
    for i in (1, 2):
        status, digest, icount, out = run_to(
            img, [*img.tandem_boot_args(img.copy(tmp, f"det{i}.img"), "redis"),
                  "--max-instructions", str(limit)], f"boot {i}")
        if status != 3 or icount != limit:
            raise Failure(f"boot {i}: exit {status} at icount {icount}, want 3 at {limit}")
        results.append((digest, out))
    if results[0] != results[1]:
        raise Failure(f"two boots differ at icount {limit}: {results[0][0]} vs {results[1][0]}")
    if READY.encode() not in results[0][1]:
        raise Failure(f"no '{READY}' within {limit} instructions: raise --det-instructions")
    snap = os.path.join(tmp, "mid.snap")
    disk = img.copy(tmp, "det3.img")
    _, digest_a, _, out_a = run_to(
        img, [*img.tandem_boot_args(disk, "redis"), "--save", snap, "--save-at", str(save_at),
              "--max-instructions", str(limit)], "saving run")
    if digest_a != results[0][0]:
        raise Failure("a run that saved a snapshot ended differently from a plain run")
    _, digest_b, icount, out_b = run_to(
        img, ["--restore", snap, "--mem", str(MEM_MIB), "--disk", disk,
              "--max-instructions", str(limit)],
        "restored run")
    if digest_b != digest_a or icount != limit or not out_a.endswith(out_b):
        raise Failure(f"restored run: {digest_b} at {icount}, want {digest_a} at {limit}")
    if b"Linux version" not in out_b or READY.encode() not in out_b:
        raise Failure(f"the snapshot at icount {save_at} was not mid-boot: the restored run "
                      f"did not print the kernel log and init's ready line (adjust --det-save-at)")
    print(f"tandem-determinism: state-hash {digest_a} at icount {limit} in every run "
          f"(snapshot at {save_at} restored in another process)")


def same_file(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def scenario_tandem_replay(img, tmp):
    """An interactive session recorded with `tandem record` (boot with Redis, commands typed
    at the prompt one at a time as the shell answers, poweroff) replays bit for bit: same
    console bytes, same state hash at the same icount, same disk."""
    img.require(tandem=True)
    disk, copy = img.copy(tmp, "rec.img"), img.copy(tmp, "rec-copy.img")
    log = os.path.join(tmp, "session.log")
    cmd = [img.tandem, "record", "--log", log, "--time", "virtual", "--state-hash",
           *img.tandem_boot_args(disk, "redis")]
    console = Console(cmd, "tandem record")
    cli = "redis-cli --raw"
    try:
        boot_to_shell(console, img.timeout)
        expect(console.label, "PING", sh(console, f"{cli} ping"), "PONG\n")
        expect(console.label, "SET", sh(console, f"{cli} set recorded yes"), "OK\n")
        expect(console.label, "INCR", sh(console, f"{cli} incr n; {cli} incr n"), "1\n2\n")
        expect(console.label, "uptime", sh(console, "cut -d' ' -f1 /proc/uptime | grep -c ."), "1\n")
        power_off(console, img.timeout)
    finally:
        console.kill()
    rec = STATE_HASH.search(console.stderr.decode(errors="replace"))
    if not rec:
        raise Failure(f"record: no state-hash\n{console.dump()}")
    replay = subprocess.run([img.tandem, "replay", "--log", log, "--state-hash",
                             *img.tandem_boot_args(copy, "redis")],
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=img.timeout)
    err = replay.stderr.decode(errors="replace")
    rep = STATE_HASH.search(err)
    replayed = replay.stdout.decode("latin-1").replace("\r", "")
    if replay.returncode != 0 or not rep or rep.groups() != rec.groups():
        raise Failure(f"replay: exit {replay.returncode}, {rep and rep.groups()} vs recorded "
                      f"{rec.groups()}\n{err[-2000:]}")
    if replayed != console.text:
        raise Failure(f"the replayed console differs from the recorded one:\n{replayed[-2000:]}")
    if not same_file(disk, copy):
        raise Failure("the replayed disk differs from the recorded one")
    print(f"tandem-replay: a recorded session (boot, redis-cli ping/set/incr, poweroff) replays "
          f"bit for bit: state-hash {rec.group(1)} at icount {rec.group(2)}, console "
          f"({len(replayed)} chars) and disk identical")


def main():
    global KERNEL_RELEASE, PIPE_KEYS
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", required=True,
                    choices=["qemu-shell", "qemu-redis", "qemu-sqlite", "qemu-bad-image",
                             "recipe", "tandem-root", "tandem-shell", "tandem-redis",
                             "tandem-determinism", "tandem-replay"])
    ap.add_argument("--images", required=True,
                    help="the build's guest/debian directory (debian.img, kernel/Image)")
    ap.add_argument("--bios", default=OPENSBI)
    ap.add_argument("--kernel", help="another kernel Image (default IMAGES/kernel/Image)")
    ap.add_argument("--initrd", help="an initramfs to boot through (a kernel "
                                     "whose virtio/ext4 drivers are modules)")
    ap.add_argument("--kernel-release", default=r"6\.1\.\S+",
                    help="regex for uname -r (with another --kernel)")
    ap.add_argument("--qemu", default="qemu-system-riscv64")
    ap.add_argument("--tandem")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per boot")
    ap.add_argument("--build-sh", help="recipe: guest/debian/build.sh")
    ap.add_argument("--apt-cache", default=os.environ.get("TANDEM_DEBIAN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tandem", "debian-apt"))
    ap.add_argument("--pipe-keys", type=int, default=PIPE_KEYS,
                    help="redis: keys sent through redis-cli --pipe")
    ap.add_argument("--det-instructions", type=int, default=300_000_000,
                    help="determinism: icount to stop at (past the shell prompt, ~150M with "
                         "the debian.config kernel and tandem.services=redis)")
    ap.add_argument("--det-save-at", type=int, default=20_000_000,
                    help="determinism: snapshot icount, inside the kernel's boot (before its "
                         "console is up)")
    args = ap.parse_args()
    KERNEL_RELEASE, PIPE_KEYS = args.kernel_release, args.pipe_keys
    img = Images(args)
    scenarios = {
        "qemu-shell": lambda tmp: scenario_qemu_shell(img, tmp),
        "qemu-redis": lambda tmp: scenario_qemu_redis(img, tmp),
        "qemu-sqlite": lambda tmp: scenario_qemu_sqlite(img, tmp),
        "qemu-bad-image": lambda tmp: scenario_qemu_bad_image(img, tmp),
        "recipe": lambda tmp: scenario_recipe(img, tmp, args.build_sh, args.apt_cache),
        "tandem-root": lambda tmp: scenario_tandem_root(img, tmp),
        "tandem-shell": lambda tmp: scenario_tandem_shell(img, tmp),
        "tandem-redis": lambda tmp: scenario_tandem_redis(img, tmp),
        "tandem-replay": lambda tmp: scenario_tandem_replay(img, tmp),
        "tandem-determinism": lambda tmp: scenario_tandem_determinism(
            img, tmp, args.det_instructions, args.det_save_at),
    }
    return guest_scenario.run("tandem-debian-", scenarios[args.scenario])

if __name__ == "__main__":
    sys.exit(main())
