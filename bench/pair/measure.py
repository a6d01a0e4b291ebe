#!/usr/bin/env python3
"""The live pair's benchmark, side by side in one run (issue 6):

  - kv guest throughput: SET/GET round trips per second from one client, on a standalone
    tandemd primary (no peer) and on a PROTECTED primary, both up at once and driven in
    alternating rounds (the machine's background load hits both alike);
  - kv throughput with 32 requests in flight, two ways: in bursts (32 sent at once, then
    their replies read: each burst waits out one output-commit round trip after the guest's
    last reply, so this is part latency) and as a sliding window (a new request for each
    reply read: the round trip overlaps the guest's work, as with many clients);
  - output-commit latency added: p50/p99 of request->reply, protected minus standalone, taken
    per round (both sides measured back to back) and reported as the median over rounds, so
    one burst of background load does not decide the figure; the pooled percentiles are
    printed too;
  - log bandwidth on the link while the client works (log_bytes from status over the run);
  - failover time: kill -9 of the primary to the first console byte from the promoted
    secondary (client retrying its connection), several runs, p50;
  - CPU-bound guest (guest/bench as bench_forever): instructions/s of a standalone tandemd
    and of a PROTECTED primary, read from `tandemctl status --json` icount over a window,
    in alternating rounds (each side alone on the machine while measured);
  - initial sync of a 256 MiB guest (guest/memfill: 240 MiB of incompressible data and a
    4 MiB working set it keeps dirtying): `tandemctl protect` to PROTECTED, rounds, bytes,
    MB/s, the guest's instruction rate during the sync against before it, and the CPU time
    each tandemd spent meanwhile.

  measure.py BUILD [--seconds S] [--rounds R] [--failovers N] [--cpu-seconds S] [--cpu-rounds R]
                   [--only kv,cpu,sync]   (--failovers 0 skips the failovers)
Uses tests/pair/pair_harness.py (real processes on 127.0.0.1). Stdlib only.
"""
import argparse
import collections
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "pair"))
from pair_harness import Cluster, KvClient, resume_after_failover  # noqa: E402


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def drive(client, seconds):
    """SET then GET round trips for `seconds`; returns per-request latencies (s) and rate."""
    latencies = []
    i = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        key, value = f"b{i % 1000}", f"value{i}"
        for command, expected in ((f"SET {key} {value}", "OK"), (f"GET {key}", value)):
            t0 = time.perf_counter()
            reply = client.command(command)
            latencies.append(time.perf_counter() - t0)
            if reply != expected:
                raise AssertionError(f"{command!r} answered {reply!r}")
        i += 1
    elapsed = time.perf_counter() - start
    return latencies, len(latencies) / elapsed, elapsed


def drive_pipelined(client, seconds, depth=32):
    """`depth` SET/GET commands sent in one write, then their replies read, for `seconds`;
    returns requests per second."""
    done = i = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = []
        for _ in range(depth // 2):
            key, value = f"p{i % 1000}", f"value{i}"
            batch += [(f"SET {key} {value}", "OK"), (f"GET {key}", value)]
            i += 1
        client.sock.sendall("".join(f"{command}\n" for command, _ in batch).encode("latin-1"))
        for command, expected in batch:
            reply = client.read_line()
            if reply != expected:
                raise AssertionError(f"{command!r} answered {reply!r}")
        done += len(batch)
    return done / (time.perf_counter() - start)


def drive_window(client, seconds, depth=32):
    """`depth` SET/GET requests kept in flight: each reply read is answered by a new request
    (a sliding window, as many clients would keep the guest busy), for `seconds`; every reply
    is checked in order. Returns requests per second."""
    expected = collections.deque()
    sent = done = 0

    def requests(n):
        nonlocal sent
        out = []
        for _ in range(n):
            pair, key = sent // 2, f"w{sent // 2 % 1000}"
            command, reply = (f"SET {key} value{pair}", "OK") if sent % 2 == 0 else (f"GET {key}", f"value{pair}")
            out.append(command)
            expected.append((command, reply))
            sent += 1
        client.sock.sendall("".join(f"{c}\n" for c in out).encode("latin-1"))

    client.sock.settimeout(client.timeout)
    start = time.perf_counter()
    requests(depth)
    buffer = client.buffer
    while expected:
        chunk = client.sock.recv(65536)
        if not chunk:
            raise ConnectionError("console closed")
        *lines, buffer = (buffer + chunk).split(b"\n")
        for line in lines:
            command, reply = expected.popleft()
            if line.decode("latin-1") != reply:
                raise AssertionError(f"{command!r} answered {line!r}")
        done += len(lines)
        if lines and time.perf_counter() - start < seconds:
            requests(len(lines))
    client.buffer = buffer
    return done / (time.perf_counter() - start)


def measure_side_by_side(build, seconds, rounds):
    """A standalone primary and a protected pair up at the same time, driven in alternation
    (`rounds` x `seconds` each), so the machine's background load hits both alike."""
    with Cluster(build) as cluster:
        solo = cluster.node("solo", "primary").start()
        a, b = cluster.pair()
        cluster.wait_protected(a, b)
        solo.wait_state("primary", "STANDALONE")
        clients = {}
        for name, node in (("standalone", solo), ("protected", a)):
            clients[name] = KvClient()
            clients[name].connect(node.console_address())
            clients[name].read_banner()
            drive(clients[name], 0.3)  # warm-up
        latencies = {"standalone": [], "protected": []}
        rounds_seen = []  # per round: {side: (p50 s, p99 s, round trips/s, 32-burst requests/s, 32-window requests/s)}
        log_bytes = log_seconds = 0.0
        for r in range(rounds):
            # Alternate which side goes first, so neither always runs right after the other.
            order = ("standalone", "protected") if r % 2 == 0 else ("protected", "standalone")
            this_round = {}
            for name in order:
                before = a.status()["log_bytes"] if name == "protected" else 0
                lat, rate, elapsed = drive(clients[name], seconds)
                latencies[name] += lat
                this_round[name] = (percentile(lat, 50), percentile(lat, 99), rate,
                                    drive_pipelined(clients[name], seconds / 2),
                                    drive_window(clients[name], seconds / 2))
                if name == "protected":
                    log_bytes += a.status()["log_bytes"] - before
                    log_seconds += elapsed
            rounds_seen.append(this_round)
        status = a.status()
        if status["state"] != "PROTECTED":
            raise AssertionError(f"the pair left PROTECTED during the run: {status['state']}")
        return latencies, rounds_seen, log_bytes / log_seconds / 1024, status["log_rate_kb_s"]


def measure_failover(build):
    with Cluster(build) as cluster:
        a, b = cluster.pair()
        cluster.wait_protected(a, b)
        client = KvClient()
        client.connect(a.console_address())
        client.read_banner()
        for i in range(50):
            client.command(f"SET f{i} v{i}")
        previous = client.recent_lines(2, client.connection)
        killed = time.monotonic()
        a.kill9()
        client.close()
        first_byte, _ = resume_after_failover(client, b.console_address(), previous, start=killed)
        return first_byte * 1000


def cpu_seconds(pid):
    """User + system CPU time of process `pid` so far (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def icount_rate(node, seconds, per_cpu=None):
    """Instructions per second of `node`'s guest over `seconds` (status icount). With a list
    `per_cpu`, also appends instructions per CPU-second of its tandemd: what the node costs
    per instruction whatever share of the machine the scheduler gives it."""
    t0, i0, c0 = time.monotonic(), node.status()["icount"], cpu_seconds(node.proc.pid)
    time.sleep(seconds)
    t1, i1, c1 = time.monotonic(), node.status()["icount"], cpu_seconds(node.proc.pid)
    if per_cpu is not None and c1 > c0:
        per_cpu.append((i1 - i0) / (c1 - c0))
    return (i1 - i0) / (t1 - t0)


def measure_cpu_bound(build, seconds, rounds):
    """Standalone vs protected instruction rate of a CPU-bound guest, alternating fresh
    processes so that each is measured alone on the machine; medians of `rounds`."""
    rates = {"standalone": [], "protected": []}
    per_cpu = {"standalone": [], "protected": []}
    for r in range(rounds):
        for name in ("standalone", "protected") if r % 2 == 0 else ("protected", "standalone"):
            with Cluster(build, guest="bench_forever") as cluster:
                if name == "standalone":
                    node = cluster.node("solo", "primary").start()
                    node.wait_state("primary", "STANDALONE")
                else:
                    node, b = cluster.pair()
                    cluster.wait_protected(node, b)
                time.sleep(0.5)  # past start-up
                rates[name].append(icount_rate(node, seconds, per_cpu[name]))
                if name == "protected" and node.status()["state"] != "PROTECTED":
                    raise AssertionError(f"the pair left PROTECTED: {node.status()}")
    return statistics.median(rates["standalone"]), statistics.median(rates["protected"]), rates, per_cpu


def median_ratio(rates):
    """The median over rounds of protected/standalone, each round's pair measured back to
    back: a slow spell of the shared machine then spoils one round, not the figure."""
    return statistics.median(p / s for s, p in zip(rates["standalone"], rates["protected"]))


def read_until(client, prefix, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        line = client.read_line(max(0.1, deadline - time.monotonic()))
        if line.startswith(prefix):
            return line


def measure_big_sync(build, before_seconds=3.0):
    """`tandemctl protect` of a running primary with 256 MiB of RAM, 240 MiB of it
    incompressible: time to PROTECTED, rounds, bytes, MB/s, and the guest's rate during
    the sync against before it."""
    with Cluster(build, guest="memfill", mem_mib=256) as cluster:
        b = cluster.node("b", "secondary").start()
        a = cluster.node("a", "primary").start()
        a.wait_state("primary", "STANDALONE")
        b.wait_state("secondary", "STANDBY")
        client = KvClient(timeout=120)
        client.connect(a.console_address())
        client.send("s")
        read_until(client, "memfill: passes")  # the fill is done
        before = icount_rate(a, before_seconds)
        t0, i0 = time.monotonic(), a.status()["icount"]
        cpu0 = {n: cpu_seconds(n.proc.pid) for n in (a, b)}
        code, out, err = a.ctl("protect", f"127.0.0.1:{b.listen_port}")
        if code != 0:
            raise AssertionError(f"tandemctl protect: {out}{err}")
        while True:
            s = a.status()
            if s["state"] == "PROTECTED":
                break
            if s["state"] not in ("SYNCING", "STANDALONE") or time.monotonic() - t0 > 300:
                raise AssertionError(f"no PROTECTED: {s}")
            time.sleep(0.02)
        t1 = time.monotonic()
        cpu = {n: cpu_seconds(n.proc.pid) - cpu0[n] for n in (a, b)}
        during = (s["icount"] - i0) / (t1 - t0)
        b.wait_state("secondary", "PROTECTED")
        after = icount_rate(a, before_seconds)
        return {"seconds": t1 - t0, "rounds": s["sync"]["rounds"], "bytes": s["sync"]["bytes"],
                "rate_mb_s": s["sync"]["rate_mb_s"], "before": before, "during": during, "after": after,
                "cpu_primary": cpu[a], "cpu_secondary": cpu[b]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    parser.add_argument("--seconds", type=float, default=1.0, help="per round and side")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--cpu-seconds", type=float, default=2.0, help="per round and side (CPU-bound)")
    parser.add_argument("--cpu-rounds", type=int, default=6)
    parser.add_argument("--only", default="kv,cpu,sync", help="which parts: kv, cpu, sync")
    args = parser.parse_args()
    build = os.path.abspath(args.build)
    parts = set(args.only.split(","))
    if "kv" in parts:
        measure_kv(build, args)
    if "cpu" in parts:
        solo, prot, rates, per_cpu = measure_cpu_bound(build, args.cpu_seconds, args.cpu_rounds)
        cpu_solo, cpu_prot = statistics.median(per_cpu["standalone"]), statistics.median(per_cpu["protected"])
        print(f"{'CPU-bound guest (bench)':34} {'standalone':>12} {'protected':>12} {'ratio':>12}")
        print(f"{'instructions/s (median of rounds)':34} {solo / 1e6:11.1f}M {prot / 1e6:11.1f}M {prot / solo:12.3f}")
        print(f"{'  median of per-round ratios':34} {'':12} {'':12} {median_ratio(rates):12.3f}")
        print(f"{'  rounds (M instr/s)':34} {' '.join(f'{r / 1e6:.0f}' for r in rates['standalone']):>12} "
              f"{' '.join(f'{r / 1e6:.0f}' for r in rates['protected']):>12}")
        print(f"{'instr per CPU-second of the primary':34} {cpu_solo / 1e6:11.1f}M {cpu_prot / 1e6:11.1f}M "
              f"{cpu_prot / cpu_solo:12.3f}")
    if "sync" in parts:
        r = measure_big_sync(build)
        mib = r["bytes"] / (1 << 20)
        print(f"{'initial sync, 256 MiB guest':34} (240 MiB incompressible, 4 MiB working set dirtied)")
        print(f"{'protect -> PROTECTED':34} {r['seconds']:.2f} s, {r['rounds']} rounds, {mib:.0f} MiB sent, "
              f"{r['rate_mb_s']:.0f} MB/s")
        print(f"{'guest instructions/s':34} before {r['before'] / 1e6:.0f}M, during sync {r['during'] / 1e6:.0f}M "
              f"({r['during'] / r['before']:.2f}), after (protected) {r['after'] / 1e6:.0f}M")
        print(f"{'CPU during the sync':34} primary {r['cpu_primary']:.2f} s, secondary {r['cpu_secondary']:.2f} s "
              f"(both tandemds, all threads; the guest's share is in the primary's)")


def measure_kv(build, args):
    latencies, rounds, kb_s, status_kb_s = measure_side_by_side(build, args.seconds, args.rounds)
    failovers = [measure_failover(build) for _ in range(args.failovers)]

    us = lambda s: s * 1e6  # noqa: E731
    med = statistics.median
    solo_rate = med(r["standalone"][2] for r in rounds)
    prot_rate = med(r["protected"][2] for r in rounds)
    ratio = med(r["protected"][2] / r["standalone"][2] for r in rounds)
    print(f"{len(rounds)} rounds x {args.seconds:g} s per side; per-round figures are medians over rounds")
    print(f"{'kv guest, one client':34} {'standalone':>12} {'protected':>12} {'ratio/added':>12}")
    print(f"{'round trips/s (median of rounds)':34} {solo_rate:12.0f} {prot_rate:12.0f} {ratio:12.3f}")
    for label, i in (("requests/s, bursts of 32", 3), ("requests/s, 32 in flight (window)", 4)):
        print(f"{label:34} {med(r['standalone'][i] for r in rounds):12.0f} "
              f"{med(r['protected'][i] for r in rounds):12.0f} "
              f"{med(r['protected'][i] / r['standalone'][i] for r in rounds):12.3f}")
    for p, i in ((50, 0), (99, 1)):
        solo = us(med(r["standalone"][i] for r in rounds))
        prot = us(med(r["protected"][i] for r in rounds))
        added = us(med(r["protected"][i] - r["standalone"][i] for r in rounds))
        print(f"{f'request->reply p{p} (us, per round)':34} {solo:12.0f} {prot:12.0f} {added:+12.0f}")
    for p in (50, 99):
        solo, prot = us(percentile(latencies["standalone"], p)), us(percentile(latencies["protected"], p))
        print(f"{f'request->reply p{p} (us, pooled)':34} {solo:12.0f} {prot:12.0f} {prot - solo:+12.0f}")
    added50 = sorted(us(r["protected"][0] - r["standalone"][0]) for r in rounds)
    print(f"{'added p50 per round (us)':34} " + " ".join(f"{v:+.0f}" for v in added50))
    print(f"{'log bandwidth (KB/s)':34} {'-':>12} {kb_s:12.1f}   (status log_rate_kb_s {status_kb_s:.1f})")
    if failovers:
        print(f"{'failover kill -9 -> console (ms)':34} p50 {med(failovers):.0f}, "
              f"min {min(failovers):.0f}, max {max(failovers):.0f} over {len(failovers)} runs")

if __name__ == "__main__":
    main()
