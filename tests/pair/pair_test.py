#!/usr/bin/env python3
"""The live pair's multi-process tests (issue 6): real tandemd/tandemctl processes, real
sockets on 127.0.0.1, the kv guest driven through its console by a checking client.

  pair_test.py --build BUILD --case NAME [--iterations N] [--seed S] [--keep]

Cases: protected, failover_kill9, failover_sigstop, reprotect_and_back, planned_failover,
bad_peers, big_memory_sync (chunked pre-copy of 72 MiB of incompressible memory), and with a witness and tandem-netsim between the nodes: fence_link_partition,
fence_partition_all, fence_stale_primary_rejoin, fence_planned_failover, fence_freeze_primary,
fence_kill_secondary, fence_standalone_lease_lapse, fence_kill_primary, fence_freeze_secondary, fence_partition_secondary,
and with the Linux guest (guest/linux):
linux_failover, linux_protected_from_boot, linux_fptest_protected (see each function). Exit status 0 = pass, 1 = a check failed, 77 = skipped
(what the case needs is not built). Stdlib only.
"""
import argparse
import contextlib
import os
import re
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pair_harness import (  # noqa: E402
    Cluster, HarnessError, KvClient, LinuxImages, Node, fenced_pair, log, log_time, make_rng, random_seed_from_env,
    resume_after_failover, wait_until)


SKIP = 77  # CTest SKIP_RETURN_CODE


class Skip(Exception):
    """The case cannot run here (e.g. the Linux images are not built); not a failure."""


def check(condition, message):
    if not condition:
        raise HarnessError(message)


def expect_reply(client, command, expected):
    reply = client.command(command)
    check(reply == expected, f"{command!r} answered {reply!r}, expected {expected!r}")


class Workload:
    """Unique SETs with the acknowledged ones recorded; `in_flight` is the key whose SET
    was sent but not answered when the primary went away (or None)."""

    def __init__(self, prefix, keyspace=None):
        self.prefix = prefix
        self.keyspace = keyspace  # reuse keys (overwrite) beyond this many: the table holds 3072
        self.acked = {}
        self.in_flight = None
        self.sent = 0

    def next_pair(self):
        i = self.sent
        self.sent += 1
        key = i % self.keyspace if self.keyspace else i
        return f"{self.prefix}{key}", f"val_{self.prefix}{i}_{i * 7919 % 100003}"

    def set_acked(self, client, count):
        """`count` SETs, each checked; returns the last key written."""
        key = None
        for _ in range(count):
            key, value = self.next_pair()
            expect_reply(client, f"SET {key} {value}", "OK")
            self.acked[key] = value
        return key

    def value_of(self, key):
        return self.acked.get(key) or (self.in_flight[1] if self.in_flight and self.in_flight[0] == key else None)


def verify_data(client, workloads, allow_in_flight=True):
    """GET every acknowledged key (exact value); an in-flight key may hold its value or be
    NOT_FOUND, nothing else; COUNT equals what is there. Returns the key count."""
    expected_count = 0
    for w in workloads:
        for key, value in w.acked.items():
            expect_reply(client, f"GET {key}", value)
        expected_count += len(w.acked)
        if w.in_flight:
            key, value = w.in_flight
            reply = client.command(f"GET {key}")
            check(reply in (value, "NOT_FOUND") if allow_in_flight else reply == value,
                  f"in-flight key {key}: GET answered {reply!r}, expected {value!r} or NOT_FOUND")
            if reply == value:
                expected_count += 1
    expect_reply(client, "COUNT", str(expected_count))
    return expected_count


def drain_old_connection(client, workload, timeout):
    """After the primary was killed or frozen: read what the old console still delivers.
    A reply to the in-flight SET that arrives makes it acknowledged."""
    try:
        while True:
            line = client.read_line(timeout)
            if workload.in_flight is None:
                raise HarnessError(f"the old console sent {line!r} with no command in flight")
            check(line == "OK", f"in-flight SET answered {line!r}")
            key, value = workload.in_flight
            workload.acked[key] = value
            workload.in_flight = None
            client.replies.append((client.connection, line))
    except (ConnectionError, socket.timeout, OSError):
        pass


# ---- cases ------------------------------------------------------------------------------

def case_protected(build, args):
    """Both nodes reach PROTECTED with sane status; the secondary executes behind the
    primary while a client works; the log carries bytes; no console on the secondary."""
    with Cluster(build, keep=args.keep) as cluster:
        a, b = cluster.pair()
        cluster.wait_protected(a, b)
        sa, sb = a.status(), b.status()
        for s, name in ((sa, "a"), (sb, "b")):
            check(s["node"] == name and s["vm_id"] == "kv", f"identity in {s}")
            check(s["epoch"] >= 1, f"epoch in {s}")
            check(s["last_audit_ok"] is True and s["last_error"] == "", f"errors in {s}")
            check(s["sync"]["done"] is True and s["sync"]["rounds"] >= 1 and s["sync"]["bytes"] > 0,
                  f"sync progress in {s}")
        check(sa["epoch"] == sb["epoch"], f"epochs differ: {sa['epoch']} vs {sb['epoch']}")
        check(sa["peer"] == f"127.0.0.1:{b.listen_port}", f"primary's peer {sa['peer']}")
        check(sa["console"].endswith(f":{a.console_port}"), f"primary's console {sa['console']}")
        log(f"PROTECTED: sync {sa['sync']['rounds']} rounds, {sa['sync']['bytes']} bytes, "
            f"{sa['sync']['rate_mb_s']:.1f} MB/s")

        # The secondary must not serve the console while the primary does.
        probe = socket.socket()
        refused = probe.connect_ex(b.console_address()) != 0
        probe.close()
        check(refused, "the secondary accepts console connections while it is a replica")

        client = KvClient()
        client.connect(a.console_address())
        client.read_banner()
        before = b.status()["icount"]
        work = Workload("p")
        work.set_acked(client, 100)
        for key, value in list(work.acked.items())[::10]:
            expect_reply(client, f"GET {key}", value)
        expect_reply(client, "COUNT", "100")

        def secondary_caught_up():
            s = b.status()
            return s if s["icount"] > before else None
        sb = wait_until(secondary_caught_up, 20, "the secondary's icount to advance")
        sa = a.status()
        log(f"icount primary {sa['icount']} secondary {sb['icount']} (was {before}); "
            f"lag {sa['lag_instructions']} instr / {sa['lag_ms']:.2f} ms; log {sa['log_bytes']} B, "
            f"{sa['log_rate_kb_s']:.1f} KB/s")
        check(sa["log_bytes"] > 0, f"primary log_bytes {sa['log_bytes']}")
        check(sa["peer_icount"] > 0, f"primary's peer_icount {sa['peer_icount']}")
        check(sa["state"] == "PROTECTED" and sb["state"] == "PROTECTED", "left PROTECTED while working")
        check(b.status()["icount"] <= a.status()["icount"], "the secondary ran ahead of the primary")
        check(a.alive() and b.alive(), "a daemon exited")


def run_failover_iteration(build, args, rng, iteration, freeze):
    """One pair, one client, one unplanned failure of the primary. Returns (failover ms,
    acked count, repeated lines)."""
    with Cluster(build, keep=args.keep) as cluster:
        # A freeze is detected by missing heartbeats only: 50 ms x 6 = 300 ms. A kill closes
        # the link at once, so kill -9 runs keep the tolerant defaults (a loaded machine).
        a, b = cluster.pair(**(dict(heartbeat_ms=50, heartbeat_misses=6) if freeze else {}))
        cluster.wait_protected(a, b)
        epoch = a.status()["epoch"]
        client = KvClient()
        client.connect(a.console_address())
        client.read_banner()
        work = Workload(f"k{iteration}_")
        work.set_acked(client, rng.randrange(0, 120))
        # The failure: between commands, or with a SET in flight after a random delay.
        mode = rng.choice(["idle", "in_flight", "in_flight_delayed"])
        if mode != "idle":
            key, value = work.next_pair()
            client.send(f"SET {key} {value}")
            work.in_flight = (key, value)
            if mode == "in_flight_delayed":
                time.sleep(rng.uniform(0, 0.004))
        killed_at = time.monotonic()
        if freeze:
            a.sigstop()
        else:
            a.kill9()
        # A reply already on its way still counts (it was released, so it is acknowledged).
        drain_old_connection(client, work, timeout=0.2 if freeze else 2)
        previous = client.recent_lines(2, client.connection)
        client.close()
        first_byte_s, repeated = resume_after_failover(client, b.console_address(), previous, start=killed_at)
        if freeze:
            check(first_byte_s >= 0.3 * 0.9, f"promoted after {first_byte_s * 1000:.0f} ms, before 6 missed heartbeats")
        count = verify_data(client, [work])
        s = b.status()
        check((s["role"], s["state"]) == ("primary", "STANDALONE"), f"promoted node is {s['role']} {s['state']}")
        check(s["epoch"] == epoch + 1, f"promoted epoch {s['epoch']}, expected {epoch + 1}")
        check("LIVE as primary" in b.log_text(), "the promoted node did not log going live")
        log(f"iteration {iteration}: {mode}, failover {first_byte_s * 1000:.0f} ms (failure to first byte), "
            f"acked {len(work.acked)}, keys now {count}, repeated {repeated}")
        return first_byte_s * 1000, len(work.acked), repeated


def case_failover(build, args, freeze):
    seed = random_seed_from_env(args.seed)
    rng = make_rng(seed)
    times = []
    for i in range(args.iterations):
        ms, _, _ = run_failover_iteration(build, args, rng, i, freeze)
        times.append(ms)
    times.sort()
    log(f"failover ms over {len(times)} runs: min {times[0]:.0f} p50 {times[len(times) // 2]:.0f} "
        f"max {times[-1]:.0f}")


def case_failover_kill9(build, args):
    """kill -9 the primary at random moments; every acknowledged SET survives."""
    case_failover(build, args, freeze=False)


def case_failover_sigstop(build, args):
    """SIGSTOP the primary: heartbeats stop, the secondary promotes after
    heartbeat_ms * heartbeat_misses; the frozen process is SIGKILLed at cleanup."""
    case_failover(build, args, freeze=True)


def case_reprotect_and_back(build, args):
    """Fail over a→b, protect b with a fresh secondary on a's old ports (the old primary's
    host coming back with an empty state dir), fail over back, and find both phases' data."""
    with Cluster(build, keep=args.keep) as cluster:
        a, b = cluster.pair()
        cluster.wait_protected(a, b)
        client = KvClient()
        client.connect(a.console_address())
        client.read_banner()
        phase1 = Workload("one_")
        phase1.set_acked(client, 40)
        killed_at = time.monotonic()
        a.kill9()
        drain_old_connection(client, phase1, timeout=1)
        previous = client.recent_lines(2, client.connection)
        ms, _ = resume_after_failover(client, b.console_address(), previous, start=killed_at)
        log(f"failed over a -> b in {ms * 1000:.0f} ms")
        b.wait_state("primary", "STANDALONE")

        # The old primary's host returns as a secondary: same ports, a fresh state dir.
        c = Node(cluster, "a-again", "secondary", a.listen_port, a.console_port)
        cluster.nodes.append(c)
        c.start()
        wait_until(lambda: c.status(), 20, "a-again's control socket")
        code, out, err = b.ctl("protect", f"127.0.0.1:{c.listen_port}")
        check(code == 0, f"tandemctl protect: status {code}: {out}{err}")
        cluster.wait_protected(b, c)
        check(b.status()["epoch"] == c.status()["epoch"] == 2, "epochs after re-protection")
        log(f"re-protected: b primary, a-again secondary at epoch {b.status()['epoch']}")

        phase2 = Workload("two_")
        phase2.set_acked(client, 40)
        verify_data(client, [phase1, phase2])
        killed_at = time.monotonic()
        b.kill9()
        drain_old_connection(client, phase2, timeout=1)
        previous = client.recent_lines(2, client.connection)
        ms, repeated = resume_after_failover(client, c.console_address(), previous, start=killed_at)
        count = verify_data(client, [phase1, phase2])
        s = c.status()
        check((s["role"], s["state"], s["epoch"]) == ("primary", "STANDALONE", 3), f"back on a-again: {s}")
        log(f"failed over back in {ms * 1000:.0f} ms; {count} keys from both phases; repeated {repeated}")


def case_planned_failover(build, args):
    """`tandemctl failover` with a client connected: every acknowledged write is on the new
    primary, nothing is repeated, and the old primary is a STANDBY secondary that can be
    protected again; a handover back with a SET in flight loses no released reply; a
    primary of an older epoch is refused by the standby."""
    with Cluster(build, keep=args.keep) as cluster:
        a, b = cluster.pair()
        cluster.wait_protected(a, b)
        epoch = a.status()["epoch"]
        client = KvClient()
        client.connect(a.console_address())
        client.read_banner()
        work = Workload("plan_")
        work.set_acked(client, 60)
        code, out, err = a.ctl("failover")
        check(code == 0, f"tandemctl failover: status {code}: {out}{err}")
        b.wait_state("primary", "STANDALONE")
        a.wait_state("secondary", "STANDBY")
        # The old console: closed, and it sent nothing more (no command was in flight).
        drain_old_connection(client, work, timeout=5)
        first_s, repeated = resume_after_failover(client, b.console_address(), [])
        check(repeated == [], f"planned failover repeated {repeated}")
        verify_data(client, [work], allow_in_flight=False)
        sa, sb = a.status(), b.status()
        check(sb["epoch"] == epoch + 1 and sa["epoch"] == epoch + 1, f"epochs {sa['epoch']} / {sb['epoch']}")
        log(f"handover: b primary at epoch {sb['epoch']}, a {sa['role']} {sa['state']}")

        # A planned handover with a SET in flight: its reply either came from the old
        # primary (then the key is there) or the command never ran (then it is not); a
        # reply that was produced but never delivered would be lost output.
        code, out, err = b.ctl("protect", f"127.0.0.1:{a.listen_port}")
        check(code == 0, f"tandemctl protect: status {code}: {out}{err}")
        cluster.wait_protected(b, a)
        more = Workload("plan2_")
        more.set_acked(client, 20)
        key, value = more.next_pair()
        client.send(f"SET {key} {value}")
        more.in_flight = (key, value)
        code, out, err = b.ctl("failover")
        check(code == 0, f"tandemctl failover back: status {code}: {out}{err}")
        a.wait_state("primary", "STANDALONE")
        drain_old_connection(client, more, timeout=5)
        _, repeated = resume_after_failover(client, a.console_address(), [])
        check(repeated == [], f"planned failover back repeated {repeated}")
        reply = client.command(f"GET {key}")
        if more.in_flight is None:
            check(reply == value, f"in-flight SET was acknowledged but GET answered {reply!r}")
        else:
            check(reply == "NOT_FOUND", f"in-flight SET ran ({reply!r}) but its OK never reached the client")
        more.in_flight = None
        verify_data(client, [work, more], allow_in_flight=False)
        log(f"handover back with a SET in flight: {'acknowledged' if key in more.acked else 'not run'}")

        # b is a STANDBY secondary that has seen epoch 3: a primary from an old epoch (its
        # state dir says 1) is refused, and the current primary can still protect b.
        stale = cluster.node("stale", "primary", peer_port=b.listen_port)
        os.makedirs(stale.state_dir, exist_ok=True)
        with open(os.path.join(stale.state_dir, "epoch"), "w") as f:
            f.write("1\n")
        stale.start()
        wait_until(lambda: "stale epoch" in b.log_text(), 20, "b to refuse the stale primary")
        check(b.status()["state"] == "STANDBY", f"b after the stale primary: {b.status()['state']}")
        code, out, err = a.ctl("protect", f"127.0.0.1:{b.listen_port}")
        check(code == 0, f"tandemctl protect: status {code}: {out}{err}")
        cluster.wait_protected(a, b)
        check(a.status()["epoch"] == 3, f"epoch after re-protection {a.status()['epoch']}")
        expect_reply(client, "COUNT", str(len(work.acked) + len(more.acked)))
        log("a primary of epoch 1 was refused by the epoch-3 standby; a protects b again")


def hostile_connections(address, rng):
    """Raw TCP misbehaviour against a link listener. Returns a description per attempt."""
    def send_and_close(payload, linger=0.1):
        s = socket.create_connection(address, timeout=5)
        try:
            s.sendall(payload)
            time.sleep(linger)
            # The server may answer (its hello) or close; either way it must not accept.
            s.settimeout(2)
            with contextlib.suppress(OSError):
                s.recv(65536)
        finally:
            s.close()
    garbage = bytes(rng.randrange(256) for _ in range(4096))
    send_and_close(garbage)
    # A frame header announcing 100 payload bytes (with some checksum), then only 10.
    send_and_close(struct.pack("<IQ", 100, 0x1234) + b"x" * 10)
    # A length prefix far over any limit.
    send_and_close(struct.pack("<IQ", 0xFFFFFFF0, 0) + b"\0" * 64)
    # A frame whose checksum is wrong.
    send_and_close(struct.pack("<IQ", 8, 0xDEADBEEF) + b"\x0a\x06garbag")
    # Silence: a connection that says nothing (refused by the handshake timer or at stop).
    silent = socket.create_connection(address, timeout=5)
    return silent


def case_bad_peers(build, args):
    """Garbage, truncated frames, oversize lengths, a wrong PSK and a second primary with
    the right PSK against a PROTECTED pair: all refused, the pair stays PROTECTED and the
    client's commands keep working throughout."""
    rng = make_rng(random_seed_from_env(args.seed))
    with Cluster(build, keep=args.keep) as cluster:
        a, b = cluster.pair()
        cluster.wait_protected(a, b)
        epoch = a.status()["epoch"]
        client = KvClient()
        client.connect(a.console_address())
        client.read_banner()
        work = Workload("bad_", keyspace=500)
        errors = []
        stop = threading.Event()

        def keep_working():
            try:
                while not stop.is_set():
                    key = work.set_acked(client, 1)
                    expect_reply(client, f"GET {key}", work.acked[key])
            except Exception as e:  # reported by the main thread
                errors.append(e)
        worker = threading.Thread(target=keep_working, daemon=True)
        worker.start()
        silent = []
        for node in (b, a):
            silent.append(hostile_connections(("127.0.0.1", node.listen_port), rng))

        # A primary with a different PSK, and then one with the right PSK, both pointed at
        # the busy secondary.
        wrong_psk = cluster.make_psk("wrong.psk")
        m = cluster.node("mallory", "primary", peer_port=b.listen_port, psk_file=wrong_psk)
        m.start()
        wait_until(lambda: "handshake" in m.log_text() or "protect" in m.log_text(), 20,
                   "mallory's handshake to fail")
        rogue = cluster.node("rogue", "primary", peer_port=b.listen_port)
        rogue.start()
        wait_until(lambda: "busy" in rogue.log_text() or "closed" in rogue.log_text(), 20,
                   "the second primary to be turned away")
        # And the wrong-PSK node's link port against the primary, from the other side.
        code, out, err = m.ctl("protect", f"127.0.0.1:{a.listen_port}")
        time.sleep(1.0)  # let the handshakes and the silent connections play out

        for s in silent:
            s.close()
        before = work.sent
        wait_until(lambda: work.sent >= before + 20 or errors, 30, "the client to make progress")
        stop.set()
        worker.join(timeout=30)
        check(not errors, f"the client failed while the pair was attacked: {errors}")
        sa, sb = a.status(), b.status()
        check((sa["state"], sb["state"]) == ("PROTECTED", "PROTECTED"), f"states {sa['state']} / {sb['state']}")
        check(sa["epoch"] == sb["epoch"] == epoch, "an attacker changed the epoch")
        check(a.alive() and b.alive(), "a daemon died")
        for node in (a, b):
            text = node.log_text()
            check("handshake" in text and ("failed" in text or "refus" in text),
                  f"{node.name} logged no refused handshake")
        check("busy" in b.log_text() or "refusing" in b.log_text(), "the secondary did not log the second primary")
        verify_data(client, [work])
        log(f"after the attacks: {work.sent} SETs written and checked, pair PROTECTED at epoch {epoch}")
        for name in ("mallory", "rogue"):
            n = next(x for x in cluster.nodes if x.name == name)
            refusals = [line for line in n.log_text().splitlines() if "handshake" in line or "refus" in line]
            log(f"{name}: {refusals[-1] if refusals else '(no refusal line)'}")


def read_until(client, prefix, timeout=60):
    """Console lines until one starts with `prefix` (others, e.g. a repeat after a failover,
    are skipped); returns it."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HarnessError(f"no console line starting with {prefix!r} in {timeout} s")
        line = client.read_line(remaining)
        if line.startswith(prefix):
            return line


def case_big_memory_sync(build, args):
    """Chunked pre-copy of a 128 MiB guest whose memory holds 72 MiB of incompressible data
    (guest/memfill): more than one link frame (64 MiB) could carry, so the sync must travel
    in parts. The running primary is protected by tandemctl; both sides reach PROTECTED
    with the state hash verified; the secondary passes audits while the guest keeps
    dirtying memory; after kill -9 of the primary the promoted secondary's guest finds its
    whole 72 MiB region intact."""
    with Cluster(build, keep=args.keep, guest="memfill_small", mem_mib=128) as cluster:
        b = cluster.node("b", "secondary")
        a = cluster.node("a", "primary")
        b.start()
        a.start()
        a.wait_state("primary", "STANDALONE")
        b.wait_state("secondary", "STANDBY")
        client = KvClient(timeout=60)
        client.connect(a.console_address())
        client.send("s")  # answered once the fill is done: the guest's main loop polls the console
        read_until(client, "memfill: passes")

        code, out, err = a.ctl("protect", f"127.0.0.1:{b.listen_port}")
        check(code == 0, f"tandemctl protect: status {code}: {out}{err}")
        seen_syncing = []

        def protected():
            s = a.status()
            if s["state"] == "SYNCING" and s["sync"]["bytes"] > 0:
                seen_syncing.append(s["sync"])
            return s if s["state"] == "PROTECTED" else None
        sa = wait_until(protected, 90, "the primary to reach PROTECTED", interval=0.1)
        b.wait_state("secondary", "PROTECTED", 30)
        sb = b.status()
        sync = sa["sync"]
        log(f"PROTECTED: {sync['rounds']} rounds, {sync['bytes']} bytes at {sync['rate_mb_s']:.1f} MB/s; "
            f"progress seen while syncing: {[x['bytes'] for x in seen_syncing][:8]}")
        check(sync["done"] and sync["bytes"] > 72 << 20, f"the sync carried less than the 72 MiB region: {sync}")
        check(sync["rounds"] >= 2, f"no dirty-page round after the full copy: {sync}")
        check(sb["sync"]["done"] and sb["sync"]["bytes"] == sync["bytes"],
              f"the secondary applied {sb['sync']} of the primary's {sync}")
        parts = [int(line.split(" parts,")[0].rsplit(" ", 1)[1])
                 for line in a.log_text().splitlines() if "pre-copy round 0:" in line]
        check(parts and parts[0] >= 18, f"round 0 was not sent in 4 MiB parts: {parts}")
        check("state hash" in b.log_text() and sa["last_error"] == "" and sb["last_error"] == "",
              f"errors: primary {sa['last_error']!r}, secondary {sb['last_error']!r}")

        # Audits (a state hash every 10 M instructions) pass on the secondary while the
        # guest dirties its working set.
        first_audit = sb["last_audit_icount"]

        def audited():
            s = b.status()
            return s if s["last_audit_icount"] > first_audit + 20_000_000 else None
        sb = wait_until(audited, 60, "the secondary to pass more audits")
        check(sb["last_audit_ok"] and sb["state"] == "PROTECTED", f"audit failed on the secondary: {sb}")

        a.kill9()
        b.wait_state("primary", "STANDALONE", 30)
        client.connect(b.console_address())
        client.send("v")
        line = read_until(client, "memfill: verify")
        check(line == "memfill: verify ok 72 MiB", f"the promoted secondary's memory: {line!r}")
        log(f"after kill -9 of the primary the promoted secondary says {line!r}")


def case_sync_log_race(build, args):
    """Log batches that reach the secondary while it is still applying the last sync chunk
    belong to the replica being built from it. They used to be dropped (the stream did not
    exist yet), and the replica diverged a few thousand instructions later ("guest idled where
    the recording did not"): about one Linux protection in six, where that window is a few ms.
    Here the secondary holds the last chunk back 500 ms (TANDEM_TEST_SYNC_APPLY_DELAY_MS) while
    a client's SETs are logged after the sync point: no divergence, every batch arrives in
    sequence, and after kill -9 the promoted secondary has every acknowledged key."""
    with Cluster(build, keep=args.keep) as cluster:
        b = cluster.node("b", "secondary", env={"TANDEM_TEST_SYNC_APPLY_DELAY_MS": "500"})
        b.start()
        wait_until(lambda: os.path.exists(b.socket), 20, "the secondary's control socket")
        a = cluster.node("a", "primary")
        a.start()
        client = KvClient()
        client.connect(a.console_address())
        client.read_banner()
        before = Workload("r0_")
        before.set_acked(client, 10)

        code, out, err = a.ctl("protect", f"127.0.0.1:{b.listen_port}")
        check(code == 0, f"tandemctl protect: status {code}: {out}{err}")
        # SETs while the replica is being built: pipelined; the output rule holds their replies
        # until the secondary has the log that carries them.
        during = Workload("r1_")
        pending = [during.next_pair() for _ in range(20)]
        for key, value in pending:
            client.send(f"SET {key} {value}")
            time.sleep(0.02)

        def diverged():
            return [line for n in (a, b) for line in n.log_text().splitlines()
                    if "DIVERGENCE" in line or "missing" in line]

        for key, value in pending:
            try:
                line = client.read_line(30)
            except (socket.timeout, ConnectionError, OSError) as e:
                raise HarnessError(f"no reply to SET {key} ({e}); {diverged()}") from None
            check(line == "OK", f"SET {key} answered {line!r}")
            during.acked[key] = value

        def protected_or_diverged():
            if diverged():
                raise HarnessError("the replica diverged:\n" + "\n".join(diverged()))
            return (a.status()["state"], b.status()["state"]) == ("PROTECTED", "PROTECTED")
        wait_until(protected_or_diverged, 30, "a and b to be PROTECTED")
        after = Workload("r2_")
        after.set_acked(client, 10)
        check(not diverged(), "the replica diverged:\n" + "\n".join(diverged()))
        epoch = a.status()["epoch"]
        synced = [line for line in b.log_text().splitlines() if "synced at icount" in line]
        check(len(synced) == 1, f"the secondary synced {len(synced)} times")

        killed_at = time.monotonic()
        a.kill9()
        drain_old_connection(client, after, timeout=2)
        previous = client.recent_lines(2, client.connection)
        client.close()
        first_byte_s, repeated = resume_after_failover(client, b.console_address(), previous, start=killed_at)
        count = verify_data(client, [before, during, after])
        s = b.status()
        check((s["role"], s["state"]) == ("primary", "STANDALONE"), f"promoted node is {s['role']} {s['state']}")
        check(s["epoch"] == epoch + 1, f"promoted epoch {s['epoch']}, expected {epoch + 1}")
        check(s["last_audit_ok"] is True, f"audit on the promoted node: {s}")
        log(f"{len(during.acked)} SETs logged while the replica was being built; failover "
            f"{first_byte_s * 1000:.0f} ms, keys now {count}, repeated {repeated}")


CASES = {
    "protected": case_protected,
    "failover_kill9": case_failover_kill9,
    "failover_sigstop": case_failover_sigstop,
    "reprotect_and_back": case_reprotect_and_back,
    "planned_failover": case_planned_failover,
    "bad_peers": case_bad_peers,
    "big_memory_sync": case_big_memory_sync,
    "sync_log_race": case_sync_log_race,
}


# ---- fencing: witness arbiter, netsim on the link and on the second heartbeat path ----------

LEASE_MS = 1500


def fencing_of(node):
    return node.status()["fencing"]


def case_fence_link_partition(build, args):
    """Partition only the replication link: the second path still hears the peer, so the
    secondary is degraded but never promoted, and the primary goes STANDALONE (it keeps the
    lease) and keeps answering."""
    with Cluster(build, keep=args.keep) as cluster:
        a, b, witness, netsim = fenced_pair(cluster, lease_ms=LEASE_MS)
        cluster.wait_protected(a, b)
        fa = fencing_of(a)
        check(fa["arbiter"].startswith("witness") and fa["lease_ms_left"] > 0 and not fa["fenced"],
              f"a's fencing status while protected: {fa}")
        check(fa["link"] == "up" and fa["heartbeat_path"] == "up" and not fa["degraded"], f"a: {fa}")
        check(isinstance(a.status()["pid"], int) and a.status()["pid"] == a.proc.pid, "status pid")
        epoch = a.status()["epoch"]
        client = KvClient()
        client.connect(a.console_address())
        client.read_banner()
        work = Workload("lp_")
        work.set_acked(client, 20)

        netsim.ctl("partition", "--name", "link", "--links", "repl,repl_back")
        log("replication link partitioned (second path untouched)")
        a.wait_state("primary", "STANDALONE", timeout=20)
        b.wait_state("secondary", "STANDBY", timeout=20)
        work.set_acked(client, 20)  # the primary keeps serving on its own
        fb = fencing_of(b)
        check(fb["degraded"] and fb["link"] == "down" and fb["heartbeat_path"] == "up",
              f"b should report degraded (link down, second path up): {fb}")
        # Well past what a promotion would take: still no promotion, a still holds the lease.
        time.sleep(3 * LEASE_MS / 1000)
        sb, sa = b.status(), a.status()
        check((sb["role"], sb["state"]) == ("secondary", "STANDBY"), f"b was promoted: {sb}")
        check(sa["state"] == "STANDALONE" and not sa["fencing"]["fenced"] and sa["fencing"]["lease_ms_left"] > 0,
              f"a should keep serving under its lease: {sa}")
        check(sa["epoch"] == epoch, f"a's epoch changed: {sa['epoch']} != {epoch}")
        check("stale" in b.log_text() and "second path" in b.log_text(), "b's log should say why it dropped its replica")
        work.set_acked(client, 10)
        verify_data(client, [work])
        netsim.ctl("heal", "--name", "link")
        log(f"a STANDALONE under epoch {epoch} kept answering; b degraded, never promoted")


def partition_all(cluster, args):
    """Shared by fence_partition_all and fence_stale_primary_rejoin: cut the primary from
    everything, the secondary and the witness (the secondary still reaches the witness, the
    consoles stay reachable). The primary cannot advance its epoch past the secondary, so it
    must not go on alone: the secondary must be promoted only after the primary stopped
    (FENCED), under a higher epoch, with every acknowledged SET, and the old primary's
    console must stay silent."""
    a, b, witness, netsim = fenced_pair(cluster, lease_ms=LEASE_MS)
    cluster.wait_protected(a, b)
    old_epoch = a.status()["epoch"]
    client = KvClient()
    client.connect(a.console_address())
    client.read_banner()
    work = Workload("pa_")
    work.set_acked(client, 30)

    netsim.ctl("partition", "--name", "split", "--groups", "a/b,witness")
    cut_at = time.monotonic()
    log("a partitioned from b and from the witness")
    # A SET sent now can only be answered if a could still release output: it cannot be
    # acknowledged by b (the link is cut), so it must not be answered at all.
    key, value = work.next_pair()
    work.in_flight = (key, value)
    client.send(f"SET {key} {value}")

    sb = b.wait_state("primary", "STANDALONE", timeout=30)
    promoted_after = time.monotonic() - cut_at
    sa = a.wait_state("primary", "FENCED", timeout=10)
    check(sb["epoch"] > old_epoch, f"b went live at epoch {sb['epoch']}, not above {old_epoch}")
    check(sa["fencing"]["fenced"] and sa["fencing"]["lease_ms_left"] == -1, f"a's fencing status: {sa['fencing']}")
    fenced_at, live_at = log_time(a, "FENCED"), log_time(b, "LIVE as primary")
    check(fenced_at is not None and live_at is not None, "log lines for FENCED / LIVE missing")
    check(fenced_at < live_at, f"b went live {live_at - fenced_at:.3f} s before a was fenced")
    log(f"a FENCED {live_at - fenced_at:.3f} s before b went live at epoch {sb['epoch']} "
        f"({promoted_after:.1f} s after the cut)")

    # The old primary's console, still connected: nothing more comes out of it.
    client.send("COUNT")
    try:
        line = client.read_line(timeout=3)
        raise HarnessError(f"the fenced primary's console answered {line!r}")
    except socket.timeout:
        pass
    # Every acknowledged SET is on the new primary (the unanswered one may or may not be).
    # b re-emits what it cannot confirm as released (at-least-once): at most the reply to
    # the unanswered SET, before it answers anything new.
    fresh = KvClient()
    _, repeated = resume_after_failover(fresh, b.console_address(), ["OK"])
    count = verify_data(fresh, [work])
    log(f"the old console stayed silent; b holds all {count} keys (re-emitted {repeated})")
    return a, b, netsim, work, fresh


def case_fence_partition_all(build, args):
    with Cluster(build, keep=args.keep) as cluster:
        partition_all(cluster, args)


def case_fence_stale_primary_rejoin(build, args):
    """After fence_partition_all, heal: the fenced old primary knocks at its old peer, is
    refused for its stale epoch and told to resync, becomes an empty STANDBY, and the new
    primary protects it again."""
    with Cluster(build, keep=args.keep) as cluster:
        a, b, netsim, work, fresh = partition_all(cluster, args)
        new_epoch = b.status()["epoch"]
        netsim.ctl("heal", "--name", "split")
        a.wait_state("secondary", "STANDBY", timeout=20)
        check(netsim.proc.poll() is None, f"tandem-netsim exited with status {netsim.proc.returncode}")
        check("resync" in a.log_text() and "refused this node" in a.log_text(), "a's log should say it was refused")
        check("stale epoch" in b.log_text(), "b's log should say it refused a stale primary")
        code, out, err = b.ctl("protect", f"127.0.0.1:{netsim.port('repl_back')}")
        check(code == 0, f"tandemctl protect: status {code}: {out}{err}")
        cluster.wait_protected(b, a)
        check(a.status()["epoch"] == b.status()["epoch"] == new_epoch, "epochs after the resync")
        work.set_acked(fresh, 10)
        verify_data(fresh, [work])
        log(f"a refused, re-synced as b's secondary at epoch {new_epoch}")


def case_fence_planned_failover(build, args):
    """tandemctl failover with the witness: the old primary releases the lease, the new one
    acquires it (a higher epoch, at once: no lease to wait out) and no output is lost."""
    with Cluster(build, keep=args.keep) as cluster:
        a, b, witness, netsim = fenced_pair(cluster, lease_ms=5000, arbiter_timeout_ms=500)
        cluster.wait_protected(a, b)
        old_epoch = a.status()["epoch"]
        client = KvClient()
        client.connect(a.console_address())
        client.read_banner()
        work = Workload("pf_")
        work.set_acked(client, 30)
        started = time.monotonic()
        code, out, err = a.ctl("failover")
        check(code == 0, f"tandemctl failover: status {code}: {out}{err}")
        sb = b.wait_state("primary", "STANDALONE", timeout=20)
        took = time.monotonic() - started
        check(took < 4.0, f"the handover took {took:.1f} s: it waited for the 5 s lease instead of a release")
        check(sb["epoch"] > old_epoch, f"epoch after the handover: {sb['epoch']} (was {old_epoch})")
        check(sb["fencing"]["lease_ms_left"] > 0, f"b holds no lease: {sb['fencing']}")
        a.wait_state("secondary", "STANDBY", timeout=20)
        previous = client.recent_lines(2, client.connection)
        _, repeated = resume_after_failover(client, b.console_address(), previous)
        check(not repeated, f"a planned handover repeats nothing, got {repeated}")
        verify_data(client, [work], allow_in_flight=False)
        log(f"handover in {took:.2f} s: epoch {old_epoch} -> {sb['epoch']}, nothing lost or repeated")


def case_fence_freeze_primary(build, args):
    """SIGSTOP the primary: the secondary takes over once the frozen primary's lease ran out;
    SIGCONT: the thawed old primary must not release anything (its lease deadline passed,
    its renewal is refused) and reports FENCED."""
    with Cluster(build, keep=args.keep) as cluster:
        a, b, witness, netsim = fenced_pair(cluster, lease_ms=LEASE_MS)
        cluster.wait_protected(a, b)
        old_epoch = a.status()["epoch"]
        client = KvClient()
        client.connect(a.console_address())
        client.read_banner()
        work = Workload("fz_")
        work.set_acked(client, 20)
        a.sigstop()
        frozen_at = time.monotonic()
        sb = b.wait_state("primary", "STANDALONE", timeout=30)
        took = time.monotonic() - frozen_at
        check(sb["epoch"] > old_epoch, f"b live at epoch {sb['epoch']}, not above {old_epoch}")
        # a renewed at most lease/3 before it froze, so its lease lapses >= 2/3 lease after.
        check(took * 1000 >= LEASE_MS * 2 / 3 * 0.95, f"b went live {took:.2f} s after the freeze, before a's lease could lapse")
        a.proc.send_signal(signal.SIGCONT)
        a.stopped = False
        client.send("COUNT")  # to the thawed old primary
        sa = a.wait_state("primary", "FENCED", timeout=15)
        check(sa["fencing"]["fenced"], f"a's fencing status: {sa['fencing']}")
        try:
            line = client.read_line(timeout=2)
            raise HarnessError(f"the thawed old primary answered {line!r}")
        except (socket.timeout, ConnectionError):
            pass  # silence, or the console closed when a became a STANDBY after its refused rejoin
        check("refused" in a.log_text() or "held" in a.log_text(), "a's log should show its refused renewal")
        fresh = KvClient()
        resume_after_failover(fresh, b.console_address(), ["OK"])
        count = verify_data(fresh, [work])
        log(f"b live {took:.2f} s after the freeze at epoch {sb['epoch']}; thawed a FENCED and silent; {count} keys on b")


def case_fence_kill_secondary(build, args):
    """kill -9 of the secondary with an arbiter: its connections end with EOF/RST, so the
    primary knows the process is gone (not cut off), goes STANDALONE at once keeping its
    lease, and answers on."""
    with Cluster(build, keep=args.keep) as cluster:
        a, b, witness, netsim = fenced_pair(cluster, lease_ms=LEASE_MS)
        cluster.wait_protected(a, b)
        client = KvClient()
        client.connect(a.console_address())
        client.read_banner()
        work = Workload("ks_")
        work.set_acked(client, 20)
        b.kill9()
        killed_at = time.monotonic()
        sa = a.wait_state("primary", "STANDALONE", timeout=20)
        took = time.monotonic() - killed_at
        check(not sa["fencing"]["fenced"] and sa["fencing"]["lease_ms_left"] > 0, f"a after the kill: {sa['fencing']}")
        work.set_acked(client, 20)
        verify_data(client, [work])
        check("process is gone" in a.log_text(), "a's log should say the secondary's process is gone")
        log(f"a STANDALONE {took:.2f} s after kill -9 of b, kept its lease and answered")


def case_fence_standalone_lease_lapse(build, args):
    """A STANDALONE primary (its secondary killed) whose lease lapses because the witness
    stops answering: a reply produced meanwhile is held (no lease, no secondary), and once
    the witness is back and the renewal granted it must leave, although the guest then
    idles in WFI waiting for input (held output was only pumped while the guest ran)."""
    with Cluster(build, keep=args.keep) as cluster:
        a, b, witness, netsim = fenced_pair(cluster, lease_ms=LEASE_MS)
        cluster.wait_protected(a, b)
        epoch = a.status()["epoch"]
        client = KvClient()
        client.connect(a.console_address())
        client.read_banner()
        work = Workload("ll_")
        work.set_acked(client, 10)
        b.kill9()
        a.wait_state("primary", "STANDALONE", timeout=20)
        work.set_acked(client, 10)

        witness.proc.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: fencing_of(a)["lease_ms_left"] == 0, 20, "a's lease to lapse")
            key, value = work.next_pair()
            client.send(f"SET {key} {value}")
            try:
                line = client.read_line(timeout=1)
                raise HarnessError(f"a answered {line!r} with its lease lapsed and no secondary")
            except socket.timeout:
                pass
        finally:
            witness.proc.send_signal(signal.SIGCONT)
        resumed_at = time.monotonic()
        wait_until(lambda: fencing_of(a)["lease_ms_left"] > 0, 20, "a to renew its lease")
        try:
            reply = client.read_line(timeout=10)  # generous: the gate is looked at every 50 ms
        except socket.timeout:
            raise HarnessError("a renewed its lease but never released the reply it held meanwhile") from None
        check(reply == "OK", f"the held SET answered {reply!r}")
        work.acked[key] = value
        took = time.monotonic() - resumed_at
        sa = a.status()
        check(sa["state"] == "STANDALONE" and sa["epoch"] == epoch and not sa["fencing"]["fenced"],
              f"a after the witness came back: {sa}")
        work.set_acked(client, 10)
        count = verify_data(client, [work])
        log(f"the reply held while a's lease was lapsed left {took:.2f} s after the witness resumed; {count} keys")


def secondary_lost_silently(cluster, prefix, cut):
    """Shared by fence_freeze_secondary and fence_partition_secondary: `cut(b)` makes the
    protected secondary silent on every path without an EOF; `restore(b)` (returned by cut)
    undoes it. The primary must advance its epoch at the witness, go STANDALONE under it and
    keep answering (the SET sent right after the cut is answered once the epoch moved); the
    secondary must never be promoted: its replica is refused, it drops it (STANDBY), and the
    primary protects it again at the new epoch. No acknowledged SET is lost."""
    a, b, witness, netsim = fenced_pair(cluster, lease_ms=LEASE_MS)
    cluster.wait_protected(a, b)
    old_epoch = a.status()["epoch"]
    client = KvClient()
    client.connect(a.console_address())
    client.read_banner()
    work = Workload(prefix)
    work.set_acked(client, 20)

    restore = cut(b, netsim)
    cut_at = time.monotonic()
    work.set_acked(client, 1)  # held while the secondary could still hold the only copy
    resumed = time.monotonic() - cut_at
    sa = a.wait_state("primary", "STANDALONE", timeout=20)
    check(sa["epoch"] == old_epoch + 1, f"a went on at epoch {sa['epoch']}, expected {old_epoch + 1}")
    check(not sa["fencing"]["fenced"] and sa["fencing"]["lease_ms_left"] > 0, f"a after the cut: {sa['fencing']}")
    check("epoch advanced" in a.log_text(), "a's log should say it advanced the epoch")
    work.set_acked(client, 20)  # a serves alone

    restore()
    b.wait_state("secondary", "STANDBY", timeout=20)
    # Well past a lease: b stays a standby (it never goes live with its stale replica).
    time.sleep(2 * LEASE_MS / 1000)
    sb = b.status()
    check((sb["role"], sb["state"]) == ("secondary", "STANDBY"), f"b after it came back: {sb}")
    check("LIVE as primary" not in b.log_text(), "b went live with a stale replica")
    check("stale" in b.log_text(), "b's log should say its replica is stale")
    work.set_acked(client, 10)

    code, out, err = a.ctl("protect", f"127.0.0.1:{netsim.port('repl')}")
    check(code == 0, f"tandemctl protect: status {code}: {out}{err}")
    cluster.wait_protected(a, b)
    check(a.status()["epoch"] == b.status()["epoch"] == old_epoch + 1, "epochs after the resync")
    work.set_acked(client, 10)
    count = verify_data(client, [work])
    log(f"RESUME_MS={resumed * 1000:.0f}: a answered {resumed:.2f} s after the cut, STANDALONE at epoch "
        f"{old_epoch + 1}; b refused/STANDBY, re-protected; {count} keys")
    return resumed


def case_fence_freeze_secondary(build, args):
    """SIGSTOP of the secondary: a host that died silently (no EOF, no RST on any path)."""
    def freeze(b, netsim):
        b.sigstop()

        def thaw():
            b.proc.send_signal(signal.SIGCONT)
            b.stopped = False
        return thaw

    with Cluster(build, keep=args.keep) as cluster:
        secondary_lost_silently(cluster, "fs_", freeze)


def case_fence_partition_secondary(build, args):
    """The secondary cut from the primary on the link and the second path (netsim), still
    reaching the witness: it suspects the primary and asks for the lease, and must be
    refused for its stale epoch (not just held off) once the primary advanced."""
    def partition(b, netsim):
        netsim.ctl("partition", "--name", "split", "--groups", "a/b", "--bridge", "witness")

        def heal():
            wait_until(lambda: "refused this replica" in b.log_text(), 20, "b's acquire refused by the witness")
            netsim.ctl("heal", "--name", "split")
        return heal

    with Cluster(build, keep=args.keep) as cluster:
        secondary_lost_silently(cluster, "ps_", partition)


def case_fence_kill_primary(build, args):
    """kill -9 of the primary with an arbiter: the secondary suspects at once (EOF on both
    paths) but is granted the lease only when the dead primary's lease ran out; no
    acknowledged SET is lost."""
    with Cluster(build, keep=args.keep) as cluster:
        a, b, witness, netsim = fenced_pair(cluster, lease_ms=LEASE_MS)
        cluster.wait_protected(a, b)
        old_epoch = a.status()["epoch"]
        client = KvClient()
        client.connect(a.console_address())
        client.read_banner()
        work = Workload("kp_")
        work.set_acked(client, 30)
        killed_at = time.monotonic()
        a.kill9()
        drain_old_connection(client, work, timeout=1)
        previous = client.recent_lines(2, client.connection)
        first_byte, repeated = resume_after_failover(client, b.console_address(), previous, start=killed_at)
        sb = b.wait_state("primary", "STANDALONE", timeout=10)
        check(sb["epoch"] > old_epoch, f"b live at epoch {sb['epoch']}, not above {old_epoch}")
        check(first_byte * 1000 < 3 * LEASE_MS, f"failover took {first_byte:.2f} s with a {LEASE_MS} ms lease")
        count = verify_data(client, [work])
        log(f"kill -9: b answered {first_byte * 1000:.0f} ms after the kill (lease {LEASE_MS} ms) at epoch "
            f"{sb['epoch']}; {count} keys; repeated {repeated}")


def case_fence_witness_stopped(build, args):
    """SIGSTOP the witness for 3 leases while a client writes: the primary cannot renew,
    but the pair is PROTECTED and the secondary's acks are fresh, so acknowledged output
    keeps flowing (docs/fencing.md "Output while the arbiter is away"). Replies must come
    after the lease has certainly lapsed; no promotion; after SIGCONT the primary renews
    and the pair is still PROTECTED under the same epoch with every acknowledged SET."""
    with Cluster(build, keep=args.keep) as cluster:
        a, b, witness, netsim = fenced_pair(cluster, lease_ms=LEASE_MS)
        cluster.wait_protected(a, b)
        epoch = a.status()["epoch"]
        client = KvClient()
        client.connect(a.console_address())
        client.read_banner()
        work = Workload("ws_", keyspace=1000)  # overwrites beyond 1000 keys (the table holds 3072)
        work.set_acked(client, 20)

        witness.proc.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        # The last granted renewal was sent before the stop, so the lease is lapsed from
        # stop + lease at the latest (its deadline is sent + 0.95 lease - 2 timeouts).
        lapsed_at = stopped_at + LEASE_MS / 1000
        resume_at = stopped_at + 3 * LEASE_MS / 1000
        replies_without_lease = 0
        samples = []
        try:
            log("witness stopped (SIGSTOP)")
            while time.monotonic() < resume_at:
                work.set_acked(client, 1)
                time.sleep(0.005)
                if time.monotonic() > lapsed_at:
                    replies_without_lease += 1
                    if replies_without_lease % 25 == 1:
                        samples.append(fencing_of(a))
        finally:
            witness.proc.send_signal(signal.SIGCONT)
        log(f"witness resumed after {time.monotonic() - stopped_at:.2f} s; {replies_without_lease} replies after "
            f"the lease had lapsed; a's fencing status then: {samples[:3]}")
        check(replies_without_lease > 0, "no reply while the witness was stopped and the lease lapsed")
        check(samples and all(f["lease_ms_left"] == 0 for f in samples),
              f"a's lease should have lapsed while the witness was stopped: {samples}")

        # The witness is back: the primary renews (same epoch), the pair stays PROTECTED.
        wait_until(lambda: fencing_of(a)["lease_ms_left"] > 0, 20, "a to renew its lease")
        sa, sb = a.status(), b.status()
        check((sa["role"], sa["state"]) == ("primary", "PROTECTED"), f"a after the witness came back: {sa}")
        check((sb["role"], sb["state"]) == ("secondary", "PROTECTED"), f"b after the witness came back: {sb}")
        check(sa["epoch"] == epoch and not sa["fencing"]["fenced"], f"a: epoch {sa['epoch']} (was {epoch}), {sa['fencing']}")
        check("LIVE as primary" not in b.log_text(), "b went live while the witness was stopped")
        work.set_acked(client, 10)
        count = verify_data(client, [work])
        log(f"PROTECTED at epoch {epoch} throughout; {count} keys")


def case_linux_failover(build, args):
    """The pair protecting the Linux kv guest (OpenSBI + kernel + initramfs, a disk): the
    primary boots it under [vm] bios/kernel/initrd/append and serves SETs unprotected; then
    `tandemctl protect` copies the running machine to the secondary (precopy); more SETs are
    checked, the primary is killed -9, and the promoted secondary answers with every
    acknowledged key, both from before and after protection. (linux_protected_from_boot
    protects from the first instruction instead.)"""
    linux = LinuxImages(build)
    if linux.missing:
        raise Skip(f"the Linux guest is not built or OpenSBI is not installed: missing {', '.join(linux.missing)} "
                   f"(configure with -DTANDEM_LINUX_GUEST=ON and build the linux guest; apt-get install opensbi)")
    with Cluster(build, keep=args.keep, linux=linux) as cluster:
        b = cluster.node("b", "secondary")
        b.start()
        a = cluster.node("a", "primary")
        a.start()
        started = time.monotonic()
        client = KvClient()
        client.connect(a.console_address())
        banner = client.read_banner(skip_boot_log=True, timeout=60)
        boot_s = time.monotonic() - started
        boot_log = [text for conn, text in client.lines if conn == client.connection][:-1]
        check(any("Linux version" in line for line in boot_log), f"no kernel log before the banner: {boot_log[-5:]}")
        check(banner.endswith("(fresh disk)"), f"banner {banner!r}: the disk should be fresh")
        check(f"booted {linux.kernel} " in a.log_text(), "the primary's log does not name the kernel it booted")
        unprotected = Workload("lu_")
        unprotected.set_acked(client, 30)
        expect_reply(client, "SYNC", "OK")  # on the disk too, which precopy carries as well

        protect_at = time.monotonic()
        code, out, err = a.ctl("protect", f"127.0.0.1:{b.listen_port}")
        check(code == 0, f"tandemctl protect: status {code}: {out}{err}")
        def protected_or_diverged():
            if "DIVERGENCE" in a.log_text():  # fail at once, with the cause, not after 60 s
                raise HarnessError("the replica diverged from the Linux primary:\n"
                                   + "\n".join(l for l in a.log_text().splitlines() if "DIVERGENCE" in l))
            return (a.status()["state"], b.status()["state"]) == ("PROTECTED", "PROTECTED")
        wait_until(protected_or_diverged, 60, "a and b to be PROTECTED")
        protected_s = time.monotonic() - protect_at
        sa = a.status()
        check(sa["vm_id"] == "kv" and sa["last_error"] == "", f"primary status {sa}")
        check(sa["sync"]["done"] and sa["sync"]["bytes"] > 0, f"sync progress {sa['sync']}")
        log(f"banner {boot_s:.2f} s after start; PROTECTED {protected_s:.2f} s after protect: "
            f"{sa['sync']['rounds']} rounds, {sa['sync']['bytes']} bytes, {sa['sync']['rate_mb_s']:.1f} MB/s")

        epoch = sa["epoch"]
        work = Workload("lx_")
        work.set_acked(client, 60)
        diverged = [l for n in (a, b) for l in n.log_text().splitlines() if "DIVERGENCE" in l]
        check(not diverged, "the replica diverged:\n" + "\n".join(diverged))
        key, value = work.next_pair()
        client.send(f"SET {key} {value}")  # one in flight when the primary dies
        work.in_flight = (key, value)
        killed_at = time.monotonic()
        a.kill9()
        drain_old_connection(client, work, timeout=2)
        previous = client.recent_lines(2, client.connection)
        client.close()
        first_byte_s, repeated = resume_after_failover(client, b.console_address(), previous, start=killed_at)
        count = verify_data(client, [unprotected, work])
        s = b.status()
        check((s["role"], s["state"]) == ("primary", "STANDALONE"), f"promoted node is {s['role']} {s['state']}")
        check(s["epoch"] == epoch + 1, f"promoted epoch {s['epoch']}, expected {epoch + 1}")
        check(s["last_audit_ok"] is True, f"audit on the promoted node: {s}")
        log(f"Linux failover {first_byte_s * 1000:.0f} ms (kill -9 to first byte), keys now {count}, "
            f"repeated {repeated}")


def replica_status_checked(a, b):
    """The secondary b's status, after checking that neither node logged a divergence and
    that b's last audit passed."""
    if "DIVERGENCE" in a.log_text() + b.log_text():
        raise HarnessError("the replica diverged:\n" + "\n".join(
            l for n in (a, b) for l in n.log_text().splitlines() if "DIVERGENCE" in l))
    s = b.status()
    check(s["last_audit_ok"] is True, f"audit failed on the secondary: {s}")
    return s


def case_linux_protected_from_boot(build, args):
    """The pair protects the Linux kv guest from its first instruction ([pair] peer set at
    start): the secondary replays the whole boot (OpenSBI, kernel, /init) from the log. The
    audits on the way (every 10 M instructions; this diverged at the 20 M one before the
    sync/log race was fixed) pass, SETs are served, and after kill -9 the promoted secondary
    has every acknowledged key."""
    linux = LinuxImages(build)
    if linux.missing:
        raise Skip(f"the Linux guest is not built or OpenSBI is not installed: missing {', '.join(linux.missing)}")
    with Cluster(build, keep=args.keep, linux=linux) as cluster:
        a, b = cluster.pair()
        cluster.wait_protected(a, b, timeout=60)
        client = KvClient()
        client.connect(a.console_address())
        banner = client.read_banner(skip_boot_log=True, timeout=60)
        check(banner.endswith("(fresh disk)"), f"banner {banner!r}: the disk should be fresh")
        work = Workload("lb_")
        work.set_acked(client, 40)

        # The chunked pre-copy lets the guest run while it copies, so the sync point falls
        # anywhere in the boot (21 M instructions in one run). The secondary must catch up
        # with the primary, and pass the 20 M audit if it synced before it.
        synced = re.search(r"synced at icount (\d+)", b.log_text())
        check(synced is not None, "the secondary logged no 'synced at icount'")
        synced_at = int(synced.group(1))
        target = a.status()["icount"]

        def caught_up():
            s = replica_status_checked(a, b)
            if synced_at < 20_000_000 and s["last_audit_icount"] < 20_000_000:
                return None
            return s if s["icount"] >= target else None
        sb = wait_until(caught_up, 60, f"the secondary to replay up to icount {target}")
        sa = a.status()
        check((sa["state"], sb["state"]) == ("PROTECTED", "PROTECTED"), f"states {sa['state']} {sb['state']}")
        log(f"protected from the start: synced at icount {synced_at}, the secondary replayed to "
            f"{sb['icount']} (last audit at {sb['last_audit_icount']}, ok); log {sa['log_bytes']} B")

        epoch = sa["epoch"]
        killed_at = time.monotonic()
        a.kill9()
        drain_old_connection(client, work, timeout=2)
        previous = client.recent_lines(2, client.connection)
        client.close()
        first_byte_s, repeated = resume_after_failover(client, b.console_address(), previous, start=killed_at)
        count = verify_data(client, [work])
        s = b.status()
        check((s["role"], s["state"], s["epoch"]) == ("primary", "STANDALONE", epoch + 1), f"promoted node {s}")
        log(f"Linux failover {first_byte_s * 1000:.0f} ms (kill -9 to first byte), keys now {count}, "
            f"repeated {repeated}")


def case_linux_fptest_protected(build, args):
    """The pair protects an FP-heavy guest from its first instruction: the Linux guest with
    /fptest (guest/linux/fptest: static glibc; printf/strtod of doubles, libm, fenv rounding
    modes and flags, four threads computing with doubles across context switches) as init.
    The primary's console shows fptest's output ending in 'fptest: PASS'; the secondary
    replays the whole run from the log, its audits (every 10 M instructions: the full
    machine state hash, f registers and fcsr included) all pass, and it reaches the icount at
    which the guest powered off on the primary."""
    linux = LinuxImages(build)
    if linux.missing:
        raise Skip(f"the Linux guest is not built or OpenSBI is not installed: missing {', '.join(linux.missing)}")
    linux.append = LinuxImages.APPEND + " rdinit=/fptest"
    with Cluster(build, keep=args.keep, linux=linux) as cluster:
        a, b = cluster.pair()
        cluster.wait_protected(a, b, timeout=60)
        client = KvClient()
        client.connect(a.console_address())
        deadline = time.monotonic() + 120
        output = []
        while not (output and output[-1].startswith("fptest: ") and output[-1] != "fptest: start"):
            remaining = deadline - time.monotonic()
            check(remaining > 0, "no fptest verdict on the primary's console:\n" + "\n".join(output[-20:]))
            output.append(client.read_line(remaining).rstrip("\r"))
        check(output[-1] == "fptest: PASS", "fptest failed on the primary:\n" + "\n".join(output[-20:]))
        check("threads: each got its own results" in output, "fptest's threads line is missing")

        def ended():
            s = a.status()
            return s if s["last_error"].startswith("guest ended") else None
        sa = wait_until(ended, 60, "the primary to see the guest power off")
        final = sa["icount"]

        def caught_up():
            s = replica_status_checked(a, b)
            return s if s["icount"] >= final else None
        sb = wait_until(caught_up, 120, f"the secondary to replay up to icount {final}")
        check(sb["icount"] == final, f"the secondary ran past the end: {sb['icount']} > {final}")
        check(sb["last_audit_icount"] >= 10_000_000, f"no audit passed on the secondary: {sb}")
        log(f"fptest protected: PASS on the primary, guest ended at icount {final}; the "
            f"secondary replayed to it, last audit at {sb['last_audit_icount']} ok; "
            f"log {sa['log_bytes']} B")


CASES.update({
    "linux_failover": case_linux_failover,
    "linux_fptest_protected": case_linux_fptest_protected,
    "linux_protected_from_boot": case_linux_protected_from_boot,
    "fence_kill_primary": case_fence_kill_primary,
    "fence_kill_secondary": case_fence_kill_secondary,
    "fence_standalone_lease_lapse": case_fence_standalone_lease_lapse,
    "fence_freeze_primary": case_fence_freeze_primary,
    "fence_link_partition": case_fence_link_partition,
    "fence_partition_all": case_fence_partition_all,
    "fence_stale_primary_rejoin": case_fence_stale_primary_rejoin,
    "fence_planned_failover": case_fence_planned_failover,
    "fence_witness_stopped": case_fence_witness_stopped,
    "fence_freeze_secondary": case_fence_freeze_secondary,
    "fence_partition_secondary": case_fence_partition_secondary,
})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", required=True, help="the CMake build directory")
    parser.add_argument("--case", required=True, choices=sorted(CASES))
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--seed", type=int, default=20260601)
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs (configs, logs)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # ctest timeout: run the cleanups
    start = time.monotonic()
    try:
        CASES[args.case](os.path.abspath(args.build), args)
    except Skip as e:
        log(f"SKIP {args.case}: {e}")
        return SKIP
    except HarnessError as e:
        log(f"FAIL {args.case}: {e}")
        return 1
    log(f"PASS {args.case} in {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
