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
                   [--baseline BUILD0 [--runs N]]

With --baseline, two builds (e.g. before and after a change) are measured in one run: N runs
of the chosen parts per build, the builds taking turns (before, after, after, before, ...) so
the machine's background load hits both alike, then min/median/max over the runs of each
headline figure side by side. Both builds are driven by this script and tests/pair's harness,
so BUILD0 must take the same tandemd config and status JSON.

CPU: besides wall-clock rates, the kv and CPU-bound parts read each tandemd's CPU time
(/proc/PID/stat, all threads): requests (or instructions) per CPU-second of the primary, and
the secondary's CPU-seconds per CPU-second of its primary.
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
    returns (requests, seconds)."""
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
    return done, time.perf_counter() - start


def drive_window(client, seconds, depth=32):
    """`depth` SET/GET requests kept in flight: each reply read is answered by a new request
    (a sliding window, as many clients would keep the guest busy), for `seconds`; every reply
    is checked in order. Returns (requests, seconds)."""
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
    return done, time.perf_counter() - start


def measure_side_by_side(build, seconds, rounds):
    """A standalone primary and a protected pair up at the same time, driven in alternation
    (`rounds` x `seconds` each), so the machine's background load hits both alike. Returns
    the pooled latencies, one dict per round and side, the log bandwidth, and the CPU time of
    each side's tandemds while it served 32 requests in flight (pooled over the rounds)."""
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
        nodes = {"standalone": (solo,), "protected": (a, b)}  # the serving primary first
        latencies = {"standalone": [], "protected": []}
        rounds_seen = []  # per round: {side: {p50, p99 (s), rate, burst, window (requests/s)}}
        # per side and load: [requests, primary CPU-s, secondary CPU-s], pooled over rounds
        cpu = {side: {load: [0, 0.0, 0.0] for load in ("burst", "window")} for side in nodes}
        log_bytes = log_seconds = 0.0
        for r in range(rounds):
            # Alternate which side goes first, so neither always runs right after the other.
            order = ("standalone", "protected") if r % 2 == 0 else ("protected", "standalone")
            this_round = {}
            for name in order:
                before = a.status()["log_bytes"] if name == "protected" else 0
                lat, rate, elapsed = drive(clients[name], seconds)
                latencies[name] += lat
                this_round[name] = {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "rate": rate}
                for load, fn in (("burst", drive_pipelined), ("window", drive_window)):
                    c0 = [cpu_seconds(n.proc.pid) for n in nodes[name]]
                    done, took = fn(clients[name], seconds / 2)
                    used = [cpu_seconds(n.proc.pid) - c for n, c in zip(nodes[name], c0)]
                    this_round[name][load] = done / took
                    pooled = cpu[name][load]
                    pooled[0] += done
                    pooled[1] += used[0]
                    pooled[2] += used[1] if len(used) > 1 else 0.0
                if name == "protected":
                    log_bytes += a.status()["log_bytes"] - before
                    log_seconds += elapsed
            rounds_seen.append(this_round)
        status = a.status()
        if status["state"] != "PROTECTED":
            raise AssertionError(f"the pair left PROTECTED during the run: {status['state']}")
        return latencies, rounds_seen, log_bytes / log_seconds / 1024, status["log_rate_kb_s"], cpu


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


def icount_rate(node, seconds, per_cpu=None, peer=None, peer_cpu=None):
    """Instructions per second of `node`'s guest over `seconds` (status icount). With a list
    `per_cpu`, also appends instructions per CPU-second of its tandemd: what the node costs
    per instruction whatever share of the machine the scheduler gives it. With a `peer` node
    and a list `peer_cpu`, appends the peer's CPU-seconds per CPU-second of `node`."""
    t0, i0, c0 = time.monotonic(), node.status()["icount"], cpu_seconds(node.proc.pid)
    p0 = cpu_seconds(peer.proc.pid) if peer else 0.0
    time.sleep(seconds)
    t1, i1, c1 = time.monotonic(), node.status()["icount"], cpu_seconds(node.proc.pid)
    p1 = cpu_seconds(peer.proc.pid) if peer else 0.0
    if per_cpu is not None and c1 > c0:
        per_cpu.append((i1 - i0) / (c1 - c0))
    if peer_cpu is not None and c1 > c0:
        peer_cpu.append((p1 - p0) / (c1 - c0))
    return (i1 - i0) / (t1 - t0)


def measure_cpu_bound(build, seconds, rounds):
    """Standalone vs protected instruction rate of a CPU-bound guest, alternating fresh
    processes so that each is measured alone on the machine; medians of `rounds`. Also
    instructions per CPU-second of the primary and the secondary's CPU per primary CPU."""
    rates = {"standalone": [], "protected": []}
    per_cpu = {"standalone": [], "protected": []}
    secondary_cpu = []
    for r in range(rounds):
        for name in ("standalone", "protected") if r % 2 == 0 else ("protected", "standalone"):
            with Cluster(build, guest="bench_forever") as cluster:
                if name == "standalone":
                    node = cluster.node("solo", "primary").start()
                    node.wait_state("primary", "STANDALONE")
                    b = None
                else:
                    node, b = cluster.pair()
                    cluster.wait_protected(node, b)
                time.sleep(0.5)  # past start-up
                rates[name].append(icount_rate(node, seconds, per_cpu[name], b, secondary_cpu if b else None))
                if name == "protected" and node.status()["state"] != "PROTECTED":
                    raise AssertionError(f"the pair left PROTECTED: {node.status()}")
    return statistics.median(rates["standalone"]), statistics.median(rates["protected"]), rates, per_cpu, secondary_cpu


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


def measure_big_sync(build, before_seconds=3.0, encryption=True):
    """`tandemctl protect` of a running primary with 256 MiB of RAM, 240 MiB of it
    incompressible: time to PROTECTED, rounds, bytes, MB/s, and the guest's rate during
    the sync against before it. `encryption`: the pair's [pair] encryption."""
    with Cluster(build, guest="memfill", mem_mib=256) as cluster:
        cluster.link_encryption = encryption
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


# The headline figures of one run, in the order the comparison prints them: key, label, format.
FIGURES = (
    ("added_p50", "added output-commit latency p50 (us)", "{:+.0f}"),
    ("added_p99", "added output-commit latency p99 (us)", "{:+.0f}"),
    ("burst_ratio", "kv bursts of 32, protected/standalone", "{:.3f}"),
    ("burst_cpu_ratio", "  the same per CPU-s of the primary", "{:.3f}"),
    ("window_ratio", "kv 32 in flight (window), prot/solo", "{:.3f}"),
    ("window_cpu_ratio", "  the same per CPU-s of the primary", "{:.3f}"),
    ("window_secondary_cpu", "  secondary CPU-s per primary CPU-s", "{:.2f}"),
    ("window_primary_cpu_us", "  primary CPU per request (us)", "{:.1f}"),
    ("rt_ratio", "kv one at a time, protected/standalone", "{:.3f}"),
    ("failover_ms", "failover kill -9 -> console, p50 (ms)", "{:.0f}"),
    ("cpu_ratio", "CPU-bound instr/s, protected/standalone", "{:.3f}"),
    ("cpu_per_cpu_ratio", "  the same per CPU-s of the primary", "{:.3f}"),
    ("cpu_secondary_cpu", "  secondary CPU-s per primary CPU-s", "{:.2f}"),
    ("cpu_protected_mips", "  protected instr/s (M)", "{:.0f}"),
    ("sync_seconds", "256 MiB sync, protect -> PROTECTED (s)", "{:.2f}"),
    ("sync_during", "  guest instr/s during / before", "{:.2f}"),
    ("crypt_added_p50", "link encryption: added latency p50 (us)", "{:+.0f}"),
    ("crypt_added_p99", "link encryption: added latency p99 (us)", "{:+.0f}"),
    ("crypt_sync_ratio", "  256 MiB sync throughput sealed/clear", "{:.3f}"),
)


def measure_kv(build, args):
    latencies, rounds, kb_s, status_kb_s, cpu = measure_side_by_side(build, args.seconds, args.rounds)
    failovers = [measure_failover(build) for _ in range(args.failovers)]

    us = lambda s: s * 1e6  # noqa: E731
    med = statistics.median
    solo_rate = med(r["standalone"]["rate"] for r in rounds)
    prot_rate = med(r["protected"]["rate"] for r in rounds)
    ratio = med(r["protected"]["rate"] / r["standalone"]["rate"] for r in rounds)
    figures = {"rt_ratio": ratio}
    print(f"{len(rounds)} rounds x {args.seconds:g} s per side; per-round figures are medians over rounds")
    print(f"{'kv guest, one client':34} {'standalone':>12} {'protected':>12} {'ratio/added':>12}")
    print(f"{'round trips/s (median of rounds)':34} {solo_rate:12.0f} {prot_rate:12.0f} {ratio:12.3f}")
    for label, load in (("requests/s, bursts of 32", "burst"), ("requests/s, 32 in flight (window)", "window")):
        figures[f"{load}_ratio"] = med(r["protected"][load] / r["standalone"][load] for r in rounds)
        print(f"{label:34} {med(r['standalone'][load] for r in rounds):12.0f} "
              f"{med(r['protected'][load] for r in rounds):12.0f} {figures[f'{load}_ratio']:12.3f}")
        per_cpu = {side: c[load][0] / c[load][1] if c[load][1] > 0 else float("nan") for side, c in cpu.items()}
        figures[f"{load}_cpu_ratio"] = per_cpu["protected"] / per_cpu["standalone"]
        print(f"{'  per CPU-second of the primary':34} {per_cpu['standalone']:12.0f} "
              f"{per_cpu['protected']:12.0f} {figures[f'{load}_cpu_ratio']:12.3f}")
    window = cpu["protected"]["window"]
    figures["window_secondary_cpu"] = window[2] / window[1] if window[1] > 0 else float("nan")
    figures["window_primary_cpu_us"] = us(window[1] / window[0])
    print(f"{'  32 in flight: CPU per request (us)':34} {us(cpu['standalone']['window'][1] / cpu['standalone']['window'][0]):12.1f} "
          f"{figures['window_primary_cpu_us']:12.1f}   (+ secondary {us(window[2] / window[0]):.1f}, "
          f"{figures['window_secondary_cpu']:.2f} of the primary's)")
    for p, key in ((50, "p50"), (99, "p99")):
        solo = us(med(r["standalone"][key] for r in rounds))
        prot = us(med(r["protected"][key] for r in rounds))
        figures[f"added_{key}"] = us(med(r["protected"][key] - r["standalone"][key] for r in rounds))
        print(f"{f'request->reply p{p} (us, per round)':34} {solo:12.0f} {prot:12.0f} {figures[f'added_{key}']:+12.0f}")
    for p in (50, 99):
        solo, prot = us(percentile(latencies["standalone"], p)), us(percentile(latencies["protected"], p))
        print(f"{f'request->reply p{p} (us, pooled)':34} {solo:12.0f} {prot:12.0f} {prot - solo:+12.0f}")
    added50 = sorted(us(r["protected"]["p50"] - r["standalone"]["p50"]) for r in rounds)
    print(f"{'added p50 per round (us)':34} " + " ".join(f"{v:+.0f}" for v in added50))
    print(f"{'log bandwidth (KB/s)':34} {'-':>12} {kb_s:12.1f}   (status log_rate_kb_s {status_kb_s:.1f})")
    if failovers:
        figures["failover_ms"] = med(failovers)
        figures["failovers"] = failovers
        print(f"{'failover kill -9 -> console (ms)':34} p50 {med(failovers):.0f}, "
              f"min {min(failovers):.0f}, max {max(failovers):.0f} over {len(failovers)} runs")
    return figures


def measure_cpu(build, args):
    solo, prot, rates, per_cpu, secondary_cpu = measure_cpu_bound(build, args.cpu_seconds, args.cpu_rounds)
    cpu_solo, cpu_prot = statistics.median(per_cpu["standalone"]), statistics.median(per_cpu["protected"])
    print(f"{'CPU-bound guest (bench)':34} {'standalone':>12} {'protected':>12} {'ratio':>12}")
    print(f"{'instructions/s (median of rounds)':34} {solo / 1e6:11.1f}M {prot / 1e6:11.1f}M {prot / solo:12.3f}")
    print(f"{'  median of per-round ratios':34} {'':12} {'':12} {median_ratio(rates):12.3f}")
    print(f"{'  rounds (M instr/s)':34} {' '.join(f'{r / 1e6:.0f}' for r in rates['standalone']):>12} "
          f"{' '.join(f'{r / 1e6:.0f}' for r in rates['protected']):>12}")
    print(f"{'instr per CPU-second of the primary':34} {cpu_solo / 1e6:11.1f}M {cpu_prot / 1e6:11.1f}M "
          f"{cpu_prot / cpu_solo:12.3f}")
    secondary = statistics.median(secondary_cpu) if secondary_cpu else float("nan")
    print(f"{'secondary CPU-s per primary CPU-s':34} {'':12} {secondary:12.2f}")
    return {"cpu_ratio": median_ratio(rates), "cpu_per_cpu_ratio": cpu_prot / cpu_solo,
            "cpu_secondary_cpu": secondary, "cpu_protected_mips": prot / 1e6}


def measure_sync(build):
    r = measure_big_sync(build)
    mib = r["bytes"] / (1 << 20)
    print(f"{'initial sync, 256 MiB guest':34} (240 MiB incompressible, 4 MiB working set dirtied)")
    print(f"{'protect -> PROTECTED':34} {r['seconds']:.2f} s, {r['rounds']} rounds, {mib:.0f} MiB sent, "
          f"{r['rate_mb_s']:.0f} MB/s")
    print(f"{'guest instructions/s':34} before {r['before'] / 1e6:.0f}M, during sync {r['during'] / 1e6:.0f}M "
          f"({r['during'] / r['before']:.2f}), after (protected) {r['after'] / 1e6:.0f}M")
    print(f"{'CPU during the sync':34} primary {r['cpu_primary']:.2f} s, secondary {r['cpu_secondary']:.2f} s "
          f"(both tandemds, all threads; the guest's share is in the primary's)")
    return {"sync_seconds": r["seconds"], "sync_during": r["during"] / r["before"]}


def measure_crypt(build, args):
    """Link encryption on vs off in the same run (issue 20): two protected pairs up at once,
    one sealing its frames (the default) and one with [pair] encryption = false, driven in
    alternation for the output-commit latency (kv one request at a time); then the 256 MiB
    initial sync of each, taking turns, `args.crypt_syncs` times."""
    us = lambda s: s * 1e6  # noqa: E731
    with Cluster(build) as sealed_cluster, Cluster(build) as clear_cluster:
        clear_cluster.link_encryption = False
        clients, primaries = {}, {}
        for name, cluster in (("sealed", sealed_cluster), ("clear", clear_cluster)):
            a, b = cluster.pair()
            cluster.wait_protected(a, b)
            primaries[name] = a
            clients[name] = KvClient()
            clients[name].connect(a.console_address())
            clients[name].read_banner()
            drive(clients[name], 0.3)  # warm-up
        rounds = []
        for r in range(args.rounds):
            order = ("sealed", "clear") if r % 2 == 0 else ("clear", "sealed")
            this_round = {}
            for name in order:
                lat, rate, _ = drive(clients[name], args.seconds)
                this_round[name] = {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "rate": rate}
            rounds.append(this_round)
        for name, a in primaries.items():
            if a.status()["state"] != "PROTECTED":
                raise AssertionError(f"the {name} pair left PROTECTED during the run")
    med = statistics.median
    figures = {}
    print(f"{'link encryption, kv one at a time':34} {'clear':>12} {'sealed':>12} {'added':>12}   "
          f"({len(rounds)} rounds x {args.seconds:g} s; min/median/max of per-round figures)")
    for key in ("p50", "p99"):
        clear = [us(r["clear"][key]) for r in rounds]
        sealed = [us(r["sealed"][key]) for r in rounds]
        added = sorted(us(r["sealed"][key] - r["clear"][key]) for r in rounds)
        figures[f"crypt_added_{key}"] = med(added)
        print(f"{f'request->reply {key} (us)':34} {med(clear):12.0f} {med(sealed):12.0f} {med(added):+12.0f}   "
              f"added min/median/max {added[0]:+.0f}/{med(added):+.0f}/{added[-1]:+.0f}")
    ratio = sorted(r["sealed"]["rate"] / r["clear"]["rate"] for r in rounds)
    print(f"{'round trips/s, sealed/clear':34} {'':12} {'':12} {med(ratio):12.3f}   "
          f"min/median/max {ratio[0]:.3f}/{med(ratio):.3f}/{ratio[-1]:.3f}")
    syncs = {"sealed": [], "clear": []}
    for i in range(args.crypt_syncs):
        for name in (("sealed", "clear") if i % 2 == 0 else ("clear", "sealed")):
            syncs[name].append(measure_big_sync(build, encryption=(name == "sealed")))
    if args.crypt_syncs:
        rate = {name: [s["bytes"] / s["seconds"] / 1e6 for s in runs] for name, runs in syncs.items()}
        ratios = sorted(s["bytes"] / s["seconds"] / (c["bytes"] / c["seconds"])
                        for s, c in zip(syncs["sealed"], syncs["clear"]))
        figures["crypt_sync_ratio"] = med(ratios)
        for name in ("clear", "sealed"):
            v = sorted(rate[name])
            secs = sorted(s["seconds"] for s in syncs[name])
            print(f"{f'256 MiB sync, {name} (MB/s)':34} min/median/max {v[0]:.0f}/{med(v):.0f}/{v[-1]:.0f}   "
                  f"protect -> PROTECTED {secs[0]:.2f}/{med(secs):.2f}/{secs[-1]:.2f} s")
        print(f"{'256 MiB sync throughput, sealed/clear':34} min/median/max "
              f"{ratios[0]:.3f}/{med(ratios):.3f}/{ratios[-1]:.3f} over {len(ratios)} pairs of runs")
    return figures


def measure(build, args, parts):
    """One run of the chosen parts on `build`; prints its tables, returns its headline figures."""
    figures = {}
    if "kv" in parts:
        figures.update(measure_kv(build, args))
    if "cpu" in parts:
        figures.update(measure_cpu(build, args))
    if "sync" in parts:
        figures.update(measure_sync(build))
    if "crypt" in parts:
        figures.update(measure_crypt(build, args))
    return figures


def load_average():
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def compare(builds, labels, args, parts):
    """`args.runs` runs of each build, taking turns (A B, B A, A B, ...), then min/median/max
    of each headline figure over the runs, side by side."""
    runs = {label: [] for label in labels}
    loads = [load_average()]
    for i in range(args.runs):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for k in order:
            print(f"=== run {i + 1}/{args.runs}: {labels[k]} ({builds[k]}), load average {load_average()}", flush=True)
            runs[labels[k]].append(measure(builds[k], args, parts))
            sys.stdout.flush()
        loads.append(load_average())
    print(f"=== {args.runs} runs per build, taking turns; load average (1/5/15 min) at the start and "
          f"after each pair of runs: {', '.join(loads)}")
    head = " / ".join(f"{label}: min median max" for label in labels)
    print(f"{'':42} {head}")
    for key, label, fmt in FIGURES:
        cells = []
        for name in labels:
            values = [r[key] for r in runs[name] if key in r]
            if not values:
                break
            cells.append(" ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values))))
        if len(cells) == len(labels):
            print(f"{label:42} " + "  |  ".join(f"{c:>22}" for c in cells))
    if "kv" in parts and args.failovers:
        for name in labels:
            every = sorted(v for r in runs[name] for v in r.get("failovers", []))
            if every:
                print(f"failovers, {name}: every run pooled (ms) p50 {statistics.median(every):.0f}, "
                      f"min {every[0]:.0f}, max {every[-1]:.0f} over {len(every)}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    parser.add_argument("--seconds", type=float, default=1.0, help="per round and side")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--cpu-seconds", type=float, default=2.0, help="per round and side (CPU-bound)")
    parser.add_argument("--cpu-rounds", type=int, default=6)
    parser.add_argument("--only", default="kv,cpu,sync,crypt", help="which parts: kv, cpu, sync, crypt")
    parser.add_argument("--crypt-syncs", type=int, default=2,
                        help="crypt: 256 MiB syncs per setting (encryption on, off), taking turns")
    parser.add_argument("--baseline", help="a second build (e.g. before a change) measured in the same run")
    parser.add_argument("--runs", type=int, default=3, help="with --baseline: runs per build")
    parser.add_argument("--labels", default="before,after", help="with --baseline: names of BASELINE,BUILD")
    args = parser.parse_args()
    build = os.path.abspath(args.build)
    parts = set(args.only.split(","))
    unknown = parts - {"kv", "cpu", "sync", "crypt"}
    if unknown:
        parser.error(f"--only: unknown part(s) {','.join(sorted(unknown))} (kv, cpu, sync, crypt)")
    if args.baseline:
        labels = args.labels.split(",")
        if len(labels) != 2 or args.runs < 1:
            parser.error("--labels takes two names and --runs at least 1")
        compare((os.path.abspath(args.baseline), build), labels, args, parts)
    else:
        measure(build, args, parts)


if __name__ == "__main__":
    main()
