#!/usr/bin/env python3
"""The live pair's benchmark, side by side in one run (issue 6):

  - kv guest throughput: SET/GET round trips per second from one client, on a standalone
    tandemd primary (no peer) and on a PROTECTED primary, both up at once and driven in
    alternating rounds (the machine's background load hits both alike);
  - output-commit latency added: p50/p99 of request->reply, protected minus standalone;
  - log bandwidth on the link while the client works (log_bytes from status over the run);
  - failover time: kill -9 of the primary to the first console byte from the promoted
    secondary (client retrying its connection), several runs, p50.

  measure.py BUILD [--seconds S] [--rounds R] [--failovers N]
Uses tests/pair/pair_harness.py (real processes on 127.0.0.1). Stdlib only.
"""
import argparse
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
        rates = {"standalone": [], "protected": []}
        log_bytes = log_seconds = 0.0
        for _ in range(rounds):
            for name in ("standalone", "protected"):
                before = a.status()["log_bytes"] if name == "protected" else 0
                lat, rate, elapsed = drive(clients[name], seconds)
                latencies[name] += lat
                rates[name].append(rate)
                if name == "protected":
                    log_bytes += a.status()["log_bytes"] - before
                    log_seconds += elapsed
        status = a.status()
        if status["state"] != "PROTECTED":
            raise AssertionError(f"the pair left PROTECTED during the run: {status['state']}")
        return latencies, rates, log_bytes / log_seconds / 1024, status["log_rate_kb_s"]


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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    parser.add_argument("--seconds", type=float, default=1.5, help="per round and side")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--failovers", type=int, default=5)
    args = parser.parse_args()
    build = os.path.abspath(args.build)

    latencies, rates, kb_s, status_kb_s = measure_side_by_side(build, args.seconds, args.rounds)
    solo_lat, prot_lat = latencies["standalone"], latencies["protected"]
    solo_rate, prot_rate = statistics.median(rates["standalone"]), statistics.median(rates["protected"])
    failovers = [measure_failover(build) for _ in range(args.failovers)]

    us = lambda s: s * 1e6  # noqa: E731
    s50, s99 = us(percentile(solo_lat, 50)), us(percentile(solo_lat, 99))
    p50, p99 = us(percentile(prot_lat, 50)), us(percentile(prot_lat, 99))
    print(f"{'kv guest, one client':34} {'standalone':>12} {'protected':>12} {'ratio/added':>12}")
    print(f"{'round trips/s (median of rounds)':34} {solo_rate:12.0f} {prot_rate:12.0f} {prot_rate / solo_rate:12.3f}")
    print(f"{'request->reply p50 (us)':34} {s50:12.0f} {p50:12.0f} {p50 - s50:+12.0f}")
    print(f"{'request->reply p99 (us)':34} {s99:12.0f} {p99:12.0f} {p99 - s99:+12.0f}")
    print(f"{'log bandwidth (KB/s)':34} {'-':>12} {kb_s:12.1f}   (status log_rate_kb_s {status_kb_s:.1f})")
    print(f"{'failover kill -9 -> console (ms)':34} p50 {statistics.median(failovers):.0f}, "
          f"min {min(failovers):.0f}, max {max(failovers):.0f} over {len(failovers)} runs")


if __name__ == "__main__":
    main()
