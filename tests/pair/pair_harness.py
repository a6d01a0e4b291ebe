#!/usr/bin/env python3
"""Multi-process harness for the live pair (issue 6): real tandemd daemons on 127.0.0.1.

  Cluster   a temp dir with a PSK, disk images and one TOML config per node; starts
            tandemd processes, kills every one of them on exit (also when the harness
            itself dies: each child gets PR_SET_PDEATHSIG=SIGKILL).
  Node      one tandemd: its config, process, log, `tandemctl status --json`, signals.
  KvClient  a checking client of the kv guest's console: one reply line per command, a
            record of every line seen, reconnects that tell a repeated reply from a new one.

Stdlib only. The tests built on it are in pair_test.py; bench/pair/run.sh uses it too.
"""
import contextlib
import ctypes
import datetime
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

KV_BANNER_PREFIX = "tandem-kv ready"


class HarnessError(AssertionError):
    """A check failed or the pair did not reach the state a test waited for."""


def log(message):
    print(message, flush=True)


# ---- process helpers -----------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # Runs in the child between fork and exec: if the harness dies (timeout, crash), the
    # kernel kills the daemon too, so no test leaves a tandemd behind.
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _ephemeral_port_floor():
    """The lowest port the kernel hands out by itself (bind to 0, connect's source port)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count):
    """`count` distinct free TCP ports on 127.0.0.1 (held open together while chosen).

    They are picked at random BELOW the kernel's ephemeral range: a port the kernel handed
    out can be taken again as the source port of any outgoing connection (a daemon's
    heartbeat reconnect loop, another test's client) between choosing it and a daemon
    listening on it, which failed a CI run with "Address already in use"."""
    floor = _ephemeral_port_floor()
    low = max(1024, floor - 16384)
    holders = []
    try:
        for _ in range(count * 64):
            if len(holders) == count:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", random.randrange(low, floor)))
            except OSError:
                s.close()
                continue
            holders.append(s)
        if len(holders) < count:
            raise HarnessError(f"no {count} free ports in {low}-{floor - 1} on 127.0.0.1")
        return [s.getsockname()[1] for s in holders]
    finally:
        for s in holders:
            s.close()


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls predicate() until it returns a truthy value (returned) or raises HarnessError."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


# ---- nodes -----------------------------------------------------------------------------

class Node:
    """One tandemd with its own config, state dir, disk, console and control socket."""

    def __init__(self, cluster, name, role, listen_port, console_port, peer_port=None,
                 psk_file=None, heartbeat_ms=100, heartbeat_misses=10, max_lag_ms=100, extra_lines=None,
                 env=None):
        self.cluster = cluster
        self.env = env  # extra environment for tandemd (test hooks)
        self.name = name
        self.role = role
        self.listen_port = listen_port
        self.console_port = console_port
        self.peer_port = peer_port
        self.dir = os.path.join(cluster.dir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.state_dir = os.path.join(self.dir, "state")
        self.disk = os.path.join(self.dir, "disk.img")
        self.socket = os.path.join(self.dir, "ctl.sock")
        self.config = os.path.join(self.dir, "node.toml")
        self.log_path = os.path.join(self.dir, "tandemd.log")
        with open(self.disk, "wb") as f:
            f.truncate(1 << 20)
        lines = [
            "[node]", f'name = "{name}"', f'state_dir = "{self.state_dir}"', 'log_level = "info"',
            "[vm]", f'disk = "{self.disk}"', 'id = "kv"', f"mem_mib = {cluster.mem_mib}",
        ]
        if role == "primary" and cluster.linux:
            lines += [f'bios = "{cluster.linux.bios}"', f'kernel = "{cluster.linux.kernel}"',
                      f'initrd = "{cluster.linux.initrd}"', f'append = "{cluster.linux.append}"']
        elif role == "primary":
            lines.append(f'guest = "{cluster.guest}"')
        lines += [
            "[pair]", f'role = "{role}"', f'listen = "127.0.0.1:{listen_port}"',
            f'psk_file = "{psk_file or cluster.psk_file}"',
            f"heartbeat_ms = {heartbeat_ms}", f"heartbeat_misses = {heartbeat_misses}",
            f"max_lag_ms = {max_lag_ms}",
        ]
        if not cluster.link_encryption:
            lines.append("encryption = false")  # benchmarks only (bench/pair --only crypt)
        if peer_port is not None:
            lines.append(f'peer = "127.0.0.1:{peer_port}"')
        lines += ["[console]", f'listen = "127.0.0.1:{console_port}"',
                  "[control]", f'socket = "{self.socket}"']
        lines += extra_lines or []  # e.g. a [fencing] section
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None
        self.stopped = False  # SIGSTOPped by a test

    # -- process --
    def start(self):
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.cluster.tandemd, "--config", self.config],
                                     stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
                                     env={**os.environ, **self.env} if self.env else None)
        self.cluster.processes.append(self.proc)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def sigstop(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- control --
    def ctl(self, *args, timeout=10):
        """Runs tandemctl against this node; returns (exit status, stdout, stderr)."""
        r = subprocess.run([self.cluster.tandemctl, "--control", self.socket, *args],
                           capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    def status(self):
        code, out, err = self.ctl("status", "--json")
        if code != 0:
            raise ValueError(f"tandemctl status on {self.name}: status {code}: {err.strip()}")
        return json.loads(out)

    def wait_state(self, role, state, timeout=30):
        def reached():
            if not self.alive():
                raise HarnessError(f"{self.name} exited with status {self.proc.returncode}")
            s = self.status()
            if s.get("state") == "FAILED":
                raise HarnessError(f"{self.name} FAILED: {s.get('last_error')}\n{self.log_text()[-3000:]}")
            return s if (s["role"], s["state"]) == (role, state) else None
        try:
            return wait_until(reached, timeout, f"{self.name} to be {role} {state}")
        except HarnessError as e:
            raise HarnessError(f"{e}\n--- {self.name} log tail ---\n{self.log_text()[-3000:]}") from None

    def console_address(self):
        return ("127.0.0.1", self.console_port)


class LinuxImages:
    """The Linux kv guest (guest/linux: OpenSBI fw_jump + Image + initramfs.cpio) for a pair
    that boots it instead of guest/kv.elf. `missing` names what is absent (the test skips)."""

    FIRMWARE = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin"
    APPEND = "console=ttyS0 printk.time=0"
    MEM_MIB = 128

    def __init__(self, build):
        # TANDEM_LINUX_IMAGES: another build's guest/linux (saves a kernel build while developing).
        images = os.environ.get("TANDEM_LINUX_IMAGES") or os.path.join(os.path.abspath(build), "guest", "linux")
        self.bios = os.environ.get("TANDEM_OPENSBI", self.FIRMWARE)
        self.kernel = os.path.join(images, "Image")
        self.initrd = os.path.join(images, "initramfs.cpio")
        self.append = self.APPEND
        self.missing = [p for p in (self.bios, self.kernel, self.initrd) if not os.path.exists(p)]


class Cluster:
    """A temp dir, a PSK and the tandemd processes of one test; `with` guarantees cleanup.
    With `linux` (LinuxImages) primaries boot the Linux kv guest instead of guest/kv.elf;
    `guest` names another guest of BUILD/guest (e.g. "memfill_small") and `mem_mib` its RAM."""

    def __init__(self, build, keep=False, linux=None, guest="kv", mem_mib=None):
        build = os.path.abspath(build)
        self.tandemd = os.path.join(build, "tools", "tandemd")
        self.tandemctl = os.path.join(build, "tools", "tandemctl")
        self.netsim_bin = os.path.join(build, "tools", "tandem-netsim")
        self.witness_bin = os.path.join(build, "tools", "tandem-witness")
        self.guest = os.path.join(build, "guest", f"{guest}.elf")
        self.linux = linux
        self.mem_mib = mem_mib or (linux.MEM_MIB if linux else 64)
        for path in (self.tandemd, self.tandemctl, self.guest):
            if not os.path.exists(path):
                raise FileNotFoundError(path)
        self.dir = tempfile.mkdtemp(prefix="tandem-pair-")
        self.keep = keep
        self.processes = []
        self.nodes = []
        self.psk_file = self.make_psk("pair.psk")
        self.link_encryption = True  # [pair] encryption of the nodes made from now on

    def make_psk(self, name):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(path, 0o600)
        return path

    def node(self, name, role, **kwargs):
        listen, console = free_ports(2)
        n = Node(self, name, role, listen, console, **kwargs)
        self.nodes.append(n)
        return n

    def pair(self, **kwargs):
        """A secondary `b` and a primary `a` that protects it at start; both started."""
        b = self.node("b", "secondary", **kwargs)
        a = self.node("a", "primary", peer_port=b.listen_port, **kwargs)
        b.start()
        wait_until(lambda: os.path.exists(b.socket), 20, "the secondary's control socket")
        a.start()
        return a, b

    def wait_protected(self, primary, secondary, timeout=30):
        primary.wait_state("primary", "PROTECTED", timeout)
        secondary.wait_state("secondary", "PROTECTED", timeout)

    def close(self):
        for p in self.processes:
            if p.poll() is None:
                with contextlib.suppress(OSError):
                    p.send_signal(signal.SIGCONT)  # a stopped process cannot die until woken
                    p.send_signal(signal.SIGKILL)
        for p in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
        for n in self.nodes:
            if getattr(n, "_log_file", None):
                n._log_file.close()
        for extra in ("witness.log", "netsim.log"):
            path = os.path.join(self.dir, extra)
            if self.keep and os.path.exists(path):
                log(f"{extra}: {path}")
        if self.keep:
            log(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def dump_logs(self, tail=4000):
        for n in self.nodes:
            log(f"--- {n.name} ({n.config}) log tail ---\n{n.log_text()[-tail:]}")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.dump_logs()
        self.close()
        return False


# ---- fencing: witness and netsim between the nodes ----------------------------------------

def _port_open(port):
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Witness:
    """A tandem-witness process on 127.0.0.1 (the arbiter both nodes reach directly)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.port = free_ports(1)[0]
        self.log_path = os.path.join(cluster.dir, "witness.log")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [cluster.witness_bin, "--listen", f"127.0.0.1:{self.port}",
             "--state-file", os.path.join(cluster.dir, "witness.state"), "--psk-file", cluster.psk_file],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        cluster.processes.append(self.proc)
        wait_until(lambda: _port_open(self.port), 20, "tandem-witness to listen")

    def address(self):
        return f"127.0.0.1:{self.port}"


class Netsim:
    """tandem-netsim proxying every TCP connection between the two nodes; `links` maps a
    link name to (from node, to node, target port) and `port(name)` is where it listens."""

    def __init__(self, cluster, links):
        self.cluster = cluster
        self.socket = os.path.join(cluster.dir, "netsim.sock")
        ports = free_ports(len(links))
        self.ports = {}
        lines = ["seed = 7"]
        for (name, (src, dst, target)), port in zip(sorted(links.items()), ports):
            self.ports[name] = port
            lines += ["[[link]]", f'name = "{name}"', 'protocol = "tcp"', f'listen = "127.0.0.1:{port}"',
                      f'target = "127.0.0.1:{target}"', f'from = "{src}"', f'to = "{dst}"']
        config = os.path.join(cluster.dir, "links.toml")
        with open(config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log_path = os.path.join(cluster.dir, "netsim.log")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [cluster.netsim_bin, "serve", "--config", config, "--control", self.socket,
             "--event-log", os.path.join(cluster.dir, "netsim-events.jsonl")],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
            # tandem-netsim can write to a connection its peer already closed; with SIGPIPE at
            # its default it then dies (-13) instead of seeing EPIPE. Python ignores SIGPIPE;
            # keeping that disposition across exec keeps the proxy alive.
            restore_signals=False)
        cluster.processes.append(self.proc)
        wait_until(lambda: all(_port_open(p) for p in self.ports.values()), 20, "tandem-netsim's links")

    def port(self, name):
        return self.ports[name]

    def ctl(self, *args):
        r = subprocess.run([self.cluster.netsim_bin, "ctl", "--control", self.socket, *args],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise HarnessError(f"tandem-netsim ctl {' '.join(args)}: status {r.returncode}: {r.stdout}{r.stderr}")
        return r.stdout


def fenced_pair(cluster, lease_ms=1500, arbiter_timeout_ms=200, heartbeat_ms=100, heartbeat_misses=5):
    """A witness, netsim on every connection between the nodes (replication link both ways:
    `repl` a→b, `repl_back` b→a; second heartbeat path: `hb_ab`, `hb_ba`) and on each node's
    witness path (`wit_a`, `wit_b`; netsim node "witness"), and a primary `a` protecting a
    secondary `b`, both with arbiter = "witness". Returns (a, b, witness, netsim)."""
    witness = Witness(cluster)
    a_listen, a_console, b_listen, b_console, a_hb, b_hb = free_ports(6)
    netsim = Netsim(cluster, {
        "repl": ("a", "b", b_listen), "repl_back": ("b", "a", a_listen),
        "hb_ab": ("a", "b", b_hb), "hb_ba": ("b", "a", a_hb),
        "wit_a": ("a", "witness", witness.port), "wit_b": ("b", "witness", witness.port),
    })

    def fencing(listen, peer, witness_link):
        return ["[fencing]", 'arbiter = "witness"', f'witness = "127.0.0.1:{netsim.port(witness_link)}"',
                f"lease_ms = {lease_ms}", f"arbiter_timeout_ms = {arbiter_timeout_ms}",
                f'heartbeat_listen = "127.0.0.1:{listen}"', f'heartbeat_peer = "127.0.0.1:{peer}"',
                f"heartbeat_ms = {heartbeat_ms}", f"heartbeat_misses = {heartbeat_misses}"]
    b = Node(cluster, "b", "secondary", b_listen, b_console, heartbeat_misses=heartbeat_misses,
             extra_lines=fencing(b_hb, netsim.port("hb_ba"), "wit_b"))
    a = Node(cluster, "a", "primary", a_listen, a_console, peer_port=netsim.port("repl"),
             heartbeat_misses=heartbeat_misses, extra_lines=fencing(a_hb, netsim.port("hb_ab"), "wit_a"))
    cluster.nodes += [b, a]
    b.start()
    wait_until(lambda: os.path.exists(b.socket), 20, "the secondary's control socket")
    a.start()
    return a, b, witness, netsim


def log_time(node, fragment):
    """The timestamp (seconds) of the first log line of `node` holding `fragment`, or None."""
    for line in node.log_text().splitlines():
        if fragment in line:  # "2026-11-26 01:37:28.756 a critical FENCED: ..."
            try:
                return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()
            except ValueError:
                continue
    return None


# ---- the kv client ---------------------------------------------------------------------

class KvClient:
    """A line client of the kv guest. Every line received is kept (`lines`) with the
    connection it came on, so a test can check what a promoted secondary repeats."""

    def __init__(self, timeout=20):
        self.sock = None
        self.buffer = b""
        self.timeout = timeout
        self.lines = []          # every complete line received, in order
        self.connection = 0      # incremented on each connect
        self.replies = []        # (connection, reply line) of answered commands

    def connect(self, address, timeout=20):
        """Connects, retrying while nobody listens. Returns seconds until connected."""
        self.close()
        start = time.monotonic()
        def attempt():
            s = socket.create_connection(address, timeout=1)
            return s
        self.sock = wait_until(attempt, timeout, f"a console on {address[0]}:{address[1]}", interval=0.002)
        self.sock.settimeout(self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""  # a partial line from an earlier connection is no reply
        self.connection += 1
        return time.monotonic() - start

    def close(self):
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def send(self, line):
        self.sock.sendall(line.encode("latin-1") + b"\n")

    def read_line(self, timeout=None):
        """The next complete line (without the newline); raises on EOF or timeout."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("no complete line")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("console closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        text = line.decode("latin-1")
        self.lines.append((self.connection, text))
        return text

    def read_banner(self, skip_boot_log=False, timeout=None):
        """The kv banner. A bare-metal guest prints it first, so anything else is an error.
        With `skip_boot_log` (the Linux guest: OpenSBI's banner and the kernel log come first)
        lines before it are skipped, until `timeout` (default: the client's) runs out."""
        if not skip_boot_log:
            line = self.read_line()
            if not line.startswith(KV_BANNER_PREFIX):
                raise HarnessError(f"expected the kv banner, got {line!r}")
            return line
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        skipped = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HarnessError(f"no kv banner after {skipped} boot log lines")
            try:
                line = self.read_line(remaining)
            except socket.timeout:
                raise HarnessError(f"no kv banner after {skipped} boot log lines "
                                   f"(last: {self.lines[-1][1] if self.lines else None!r})") from None
            # The kernel's console may end lines in \r\n; the banner is at the start of a line.
            if line.rstrip("\r").startswith(KV_BANNER_PREFIX):
                return line.rstrip("\r")
            skipped += 1

    def command(self, line, timeout=None):
        self.send(line)
        reply = self.read_line(timeout)
        self.replies.append((self.connection, reply))
        return reply

    def recent_lines(self, count, connection):
        """The last `count` lines received on `connection`."""
        return [text for conn, text in self.lines if conn == connection][-count:]


# A command with a reply that the workloads never produce, so it cannot be mistaken for a
# repeated reply: the kv guest answers an unknown command word with this error.
PROBE_COMMAND = "PING"
PROBE_REPLY = "ERR unknown command"


def resume_after_failover(client, address, previous_lines, timeout=30, start=None):
    """Reconnects `client` to `address` and sends the probe command.

    Lines that arrive before the probe's reply must each equal one of `previous_lines`
    (the last replies the client saw from the old primary): at-least-once output may repeat
    them, nothing else. Returns (seconds from `start` (default: now) to the first byte
    received, the repeated lines)."""
    if PROBE_REPLY in previous_lines:
        raise HarnessError("the probe reply is among the previous replies: the check would be blind")
    start = time.monotonic() if start is None else start
    client.connect(address, timeout=timeout)
    client.send(PROBE_COMMAND)
    # recv() returns as soon as anything arrives: the first byte after the failover.
    client.sock.settimeout(timeout)
    chunk = client.sock.recv(65536)
    if not chunk:
        raise ConnectionError("the promoted console closed at once")
    first_byte = time.monotonic() - start
    client.buffer += chunk
    repeated = []
    while True:
        line = client.read_line(timeout)
        if line == PROBE_REPLY:
            client.replies.append((client.connection, line))
            return first_byte, repeated
        if line not in previous_lines:
            raise HarnessError(
                f"after failover the console said {line!r} before answering {PROBE_COMMAND!r}; "
                f"only a repeat of the last replies {previous_lines!r} is allowed")
        repeated.append(line)


def random_seed_from_env(default):
    value = os.environ.get("TANDEM_PAIR_SEED")
    return int(value) if value else default


def make_rng(seed):
    log(f"seed {seed} (rerun with TANDEM_PAIR_SEED={seed})")
    return random.Random(seed)
