#!/usr/bin/env python3
"""`tandemctl drill` as a process: bad usage, every drill on a --lab, Ctrl-C cleanup.

  drill_test.py --build BUILD --case usage
  drill_test.py --build BUILD --case lab --drill kill-primary --iterations 2
  drill_test.py --build BUILD --case interrupt
  drill_test.py --build BUILD --case external      (an existing pair: --control/--peer-control)
  drill_test.py --build BUILD --case catches_split_brain   (no arbiter: the drill must FAIL)

Stdlib only. A lab case checks the exit status, the text lines, the JSON report's fields
and values, and that no process the lab started is left running afterwards.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

FAILOVER_DRILLS = {"kill-primary", "freeze-primary", "partition-all"}
NO_FAILOVER_DRILLS = {"partition-link", "lose-witness", "freeze-secondary"}
ALL_DRILLS = ["kill-primary", "freeze-primary", "freeze-secondary", "partition-link", "partition-all", "lose-witness",
              "flapping-link", "slow-link"]


def fail(message):
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def run(tandemctl, *args, timeout=60):
    r = subprocess.run([tandemctl, "drill", *args], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def processes_mentioning(text):
    """Pids of live processes whose command line contains `text` (the lab's temp dir)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append((int(pid), cmdline))
    return found


def lab_dir_of(stdout):
    m = re.search(r"lab (/tmp/tandem-drill-\w+)", stdout)
    check(m, f"the first line names the lab dir: {stdout[:300]!r}")
    return m.group(1)


def case_usage(tandemctl, args):
    code, out, err = run(tandemctl, "--list")
    check(code == 0, f"--list: status {code}: {err}")
    for name in ALL_DRILLS:
        check(name in out, f"--list names {name}")

    bad = [
        (["no-such-drill", "--lab"], 'unknown drill "no-such-drill"'),
        (["kill-primary"], "give --lab"),
        ([], "name a drill"),
        (["kill-primary", "--control", "/tmp/a.sock"], "needs both --control and --peer-control"),
        (["kill-primary", "--lab", "--control", "/tmp/a.sock"], "cannot be used with --control"),
        (["kill-primary", "--control", "/tmp/a.sock", "--peer-control", "/tmp/a.sock"], "the same socket"),
        (["partition-link", "--control", "/tmp/a.sock", "--peer-control", "/tmp/b.sock"], "needs --netsim"),
        (["lose-witness", "--control", "/tmp/a.sock", "--peer-control", "/tmp/b.sock"], "use --lab"),
        (["kill-primary", "--control", "/nonexistent/a.sock", "--peer-control", "/nonexistent/b.sock"],
         "/nonexistent/a.sock: no tandemd answers"),
        (["kill-primary", "--lab", "--iterations", "0"], "iterations"),
        (["kill-primary", "--lab", "--arbiter", "etcd"], "--arbiter etcd"),
        (["kill-primary", "--lab", "--bin-dir", "/nonexistent"], "needs tandemd in /nonexistent"),
        (["kill-primary", "--lab", "--guest", "/nonexistent/kv.elf"], "/nonexistent/kv.elf does not exist"),
    ]
    for argv, expected in bad:
        code, out, err = run(tandemctl, *argv)
        check(code == 2, f"drill {' '.join(argv)}: expected status 2, got {code}\n{out}{err}")
        check(expected in err, f"drill {' '.join(argv)}: expected {expected!r} in stderr, got {err!r}")
        print(f"ok: drill {' '.join(argv)} -> 2: {err.strip().splitlines()[0]}", flush=True)


def case_lab(tandemctl, args):
    report_path = os.path.join(tempfile.mkdtemp(prefix="drill-report-"), "report.json")
    start = time.monotonic()
    code, out, err = run(tandemctl, args.drill, "--lab", "--iterations", str(args.iterations),
                         "--report", report_path, "--seed", str(args.seed), timeout=args.timeout)
    print(out + err, flush=True)
    print(f"took {time.monotonic() - start:.1f} s", flush=True)
    lab_dir = lab_dir_of(out)
    left = processes_mentioning(lab_dir)
    check(not left, f"processes left behind: {left}")
    check(not os.path.exists(lab_dir), f"the lab dir {lab_dir} was not removed")
    check(code == 0, f"exit status {code}")

    lines = [l for l in out.splitlines() if re.match(rf"{re.escape(args.drill)} \d+/{args.iterations}: ", l)]
    check(len(lines) == args.iterations, f"one line per iteration, got {lines}")
    check(all(": PASS " in l for l in lines), "every iteration line says PASS")
    check(re.search(rf"^{re.escape(args.drill)}: PASS \({args.iterations}/{args.iterations} iterations passed\)",
                    out, re.M), "summary line")

    with open(report_path) as f:
        report = json.load(f)
    check(report["drill"] == args.drill, "report names the drill")
    check(len(report["iterations"]) == args.iterations, "report has every iteration")
    for it in report["iterations"]:
        for key in ("acked_lost", "dual_primary_epochs", "failover_ms", "unavailable_ms", "passed",
                    "writes_acked", "phantoms", "promoted"):
            check(key in it, f"iteration field {key}")
        check(it["passed"] is True, f"iteration passed: {it}")
        check(it["acked_lost"] == 0 and it["dual_primary_epochs"] == 0 and it["phantoms"] == 0, f"clean: {it}")
        check(it["writes_acked"] > 0 and it["reads"] > 0, f"the client worked: {it}")
        check(it["status_polls"] > 0, f"the monitor polled: {it}")
        if args.drill in FAILOVER_DRILLS:
            check(it["promoted"] and it["failover_ms"] is not None and it["failover_ms"] > 0,
                  f"a failover with a time: {it}")
            check(it["epoch_after"] > it["epoch_before"], f"a newer epoch: {it}")
        if args.drill in NO_FAILOVER_DRILLS:
            check(not it["promoted"] and it["failover_ms"] is None, f"no failover: {it}")
            if args.drill == "freeze-secondary":  # the primary moved its epoch past the frozen replica
                check(it["epoch_after"] == it["epoch_before"] + 1, f"the primary's epoch + 1: {it}")
            else:
                check(it["epoch_after"] == it["epoch_before"], f"same epoch: {it}")
    totals = report["totals"]
    for key in ("acked_lost", "dual_primary_epochs", "failover_ms", "unavailable_ms", "passed"):
        check(key in totals, f"totals field {key}")
    check(totals["passed"] is True and totals["acked_lost"] == 0 and totals["dual_primary_epochs"] == 0,
          f"totals: {totals}")
    check(totals["iterations"] == args.iterations, "totals count the iterations")
    os.remove(report_path)
    os.rmdir(os.path.dirname(report_path))


def case_interrupt(tandemctl, args):
    proc = subprocess.Popen([tandemctl, "drill", "kill-primary", "--lab", "--iterations", "1000"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        lab_dir = lab_dir_of(first)
        second = proc.stdout.readline()  # the first iteration's line: the pair is up, a drill runs
        check("kill-primary 1/1000:" in second, f"an iteration ran: {second!r}")
        time.sleep(0.5)  # now somewhere inside iteration 2 (or the re-protect before it)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(first + second + rest, flush=True)
    check(proc.returncode == 130, f"Ctrl-C: expected status 130, got {proc.returncode}")
    check("interrupted" in rest, "the summary says it was interrupted")
    left = processes_mentioning(lab_dir)
    check(not left, f"processes left behind after Ctrl-C: {left}")
    check(not os.path.exists(lab_dir), f"the lab dir {lab_dir} was not removed")


def case_catches_split_brain(tandemctl, args):
    """The checks can fail: without an arbiter nothing fences a frozen primary, so after
    SIGCONT it serves again next to the promoted secondary. The drill must say FAIL, count
    a dual-primary epoch and exit 1."""
    report_path = os.path.join(tempfile.mkdtemp(prefix="drill-report-"), "report.json")
    code, out, err = run(tandemctl, "freeze-primary", "--lab", "--arbiter", "none", "--report", report_path,
                         timeout=args.timeout)
    print(out + err, flush=True)
    lab_dir = lab_dir_of(out)
    check(not processes_mentioning(lab_dir), "no process left behind")
    check(code == 1, f"a failed drill exits 1, got {code}")
    check("freeze-primary 1/1: FAIL" in out, "the iteration line says FAIL")
    check("dual primary" in out or "from the old primary after the new one went live" in out, "the reason is given")
    with open(report_path) as f:
        report = json.load(f)
    it = report["iterations"][0]
    check(it["passed"] is False and it["dual_primary_epochs"] >= 1 and it["promoted"], f"iteration: {it}")
    check(report["totals"]["dual_primary_epochs"] >= 1 and report["totals"]["passed"] is False, "totals")
    os.remove(report_path)
    os.rmdir(os.path.dirname(report_path))


def case_external(tandemctl, args):
    """An existing pair (started by the pair tests' harness, arbiter none): kill-primary by
    the pid in its status, then a second iteration that must wait for a re-protect nobody
    does, and give up with a clear message."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pair"))
    from pair_harness import Cluster
    with Cluster(args.build) as cluster:
        a, b = cluster.pair(heartbeat_ms=50, heartbeat_misses=6)
        cluster.wait_protected(a, b)
        code, out, err = run(tandemctl, "kill-primary", "--control", a.socket, "--peer-control", b.socket,
                             "--iterations", "2", "--reprotect-timeout", "3", timeout=args.timeout)
        print(out + err, flush=True)
        check(not a.alive(), "the drill killed the primary it found in the status")
        check(b.status()["role"] == "primary", "the secondary took over")
        check(re.search(r"^kill-primary 1/2: PASS ", out, re.M), "iteration 1 passed")
        check("not PROTECTED again after 3 s" in out, "iteration 2 waited for a re-protect and said so")
        check(code == 1, f"a run that stopped early exits 1, got {code}")
        # Signals need the daemon's pid: a socket that is not a tandemd is refused up front.
        code, out, err = run(tandemctl, "kill-primary", "--control", b.socket, "--peer-control",
                             "/nonexistent/x.sock")
        check(code == 2 and "/nonexistent/x.sock: no tandemd answers" in err, f"unreachable peer: {code} {err}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", required=True)
    parser.add_argument("--case", required=True, choices=["usage", "lab", "interrupt", "external", "catches_split_brain"])
    parser.add_argument("--drill", default="kill-primary")
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("TANDEM_DRILL_SEED", "7")))
    parser.add_argument("--timeout", type=float, default=240)
    args = parser.parse_args()
    tandemctl = os.path.join(os.path.abspath(args.build), "tools", "tandemctl")
    cases = {"usage": case_usage, "lab": case_lab, "interrupt": case_interrupt, "external": case_external,
             "catches_split_brain": case_catches_split_brain}
    cases[args.case](tandemctl, args)
    print("PASS", flush=True)


if __name__ == "__main__":
    main()
