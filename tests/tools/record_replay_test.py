#!/usr/bin/env python3
"""Multi-process tests of `tandem record` and `tandem replay`.

Each case starts real tandem processes: an interactive session is recorded over a TCP
console in one process and replayed in another, which must print the same console output
and reach the same state hash; perturbed and damaged logs must be refused precisely.
Usage: record_replay_test.py TANDEM GUEST_DIR
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

TANDEM, GUESTS = sys.argv[1], sys.argv[2]
failures = []
passed = 0


def guest(name):
    return os.path.join(GUESTS, name + ".elf")


def check(cond, what):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)
        print("FAIL:", what, flush=True)


def run(args, stdin=subprocess.DEVNULL, timeout=120):
    return subprocess.run([TANDEM] + args, stdin=stdin, capture_output=True, timeout=timeout)


def state_hash(stderr):
    m = re.search(rb"state-hash=([0-9a-f]{16}) icount=(\d+)", stderr)
    return (m.group(1), int(m.group(2))) if m else None


def record_over_tcp(log, elf, lines, extra=(), expect_prompt=None, disk=None):
    """Records `elf` with its console on a TCP socket; a client sends `lines` one by one,
    waiting for each reply line when expect_prompt is set. Returns (returncode, console bytes, stderr)."""
    args = ["record", "--log", log, "--console", "tcp:127.0.0.1:0", "--state-hash", *extra]
    if disk:
        args += ["--disk", disk]
    proc = subprocess.Popen([TANDEM] + args + [elf], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    port = None
    err_head = b""
    deadline = time.time() + 30
    while port is None and time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        err_head += line
        m = re.search(rb"console listening on tcp:127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
    if port is None:
        proc.kill()
        return None, b"", err_head
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.settimeout(30)
        for line in lines:
            s.sendall(line)
            if expect_prompt is not None:
                while received.count(b"\n") < expect_prompt(line, received):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    received += chunk
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                received += chunk
        except socket.timeout:
            pass
    out, err = proc.communicate(timeout=60)
    return proc.returncode, received, err_head + err


def replay(log, elf, extra=()):
    r = run(["replay", "--log", log, "--state-hash", *extra, elf])
    return r.returncode, r.stdout, r.stderr


def case_interactive_tcp_session(tmp):
    log = os.path.join(tmp, "plic.log")
    rc, console, err = record_over_tcp(log, guest("plic_uart"), [b"ping\n"], extra=["--time", "virtual"])
    check(rc == 0, f"record plic_uart over TCP exits 0 (got {rc}): {err[-300:]!r}")
    rrc, out, rerr = replay(log, guest("plic_uart"))
    check(rrc == 0, f"replay exits 0 (got {rrc}): {rerr[-300:]!r}")
    check(out == console, "replayed console output equals what the TCP client saw")
    check(state_hash(err) is not None and state_hash(err) == state_hash(rerr),
          f"replay reaches the recorded final state hash ({state_hash(err)} vs {state_hash(rerr)})")


def case_wall_time_with_idle_and_adjustments(tmp):
    log = os.path.join(tmp, "timer.log")
    r = run(["record", "--log", log, "--time", "wall", "--audit-interval", "5000", "--state-hash", guest("timer")])
    check(r.returncode == 0, f"record timer (wall time) exits 0: {r.stderr[-300:]!r}")
    rrc, out, rerr = replay(log, guest("timer"), extra=["--stats"])
    check(rrc == 0 and out == r.stdout, "wall-time recording with idle skips replays byte for byte")
    check(state_hash(r.stderr) == state_hash(rerr), "and to the same state hash")
    audits = re.search(rb"audits_checked=(\d+)", rerr)
    check(audits is not None and int(audits.group(1)) > 1, "replay checked several audits")


def case_edited_payload_fails_its_checksum(tmp):
    """A byte changed inside a batch (without a matching checksum) is a corrupted batch.
    (Consistent edits that make the replay diverge are tested in replay_divergence_test.)"""
    log = os.path.join(tmp, "timer.log")
    r = run(["record", "--log", log, "--time", "virtual", "--audit-interval", "100000", guest("timer")])
    check(r.returncode == 0, "record timer")
    data = bytearray(open(log, "rb").read())
    header_len = int.from_bytes(data[8:12], "little")
    first_batch = 8 + 12 + header_len
    check(first_batch + 12 < len(data), "the log has a batch after its header")
    data[first_batch + 12] ^= 0x01
    bad = os.path.join(tmp, "bad_checksum.log")
    open(bad, "wb").write(data)
    rc, _, err = replay(bad, guest("timer"))
    check(rc == 2 and re.search(rb"offset %d: frame checksum mismatch" % first_batch, err) is not None,
          f"an edited batch is refused with its offset {first_batch} (rc {rc}, {err[-200:]!r})")


def case_damaged_logs(tmp):
    log = os.path.join(tmp, "hello.log")
    r = run(["record", "--log", log, "--time", "virtual", guest("hello")])
    check(r.returncode == 0, "record hello")
    data = open(log, "rb").read()
    cases = {
        "truncated": data[: len(data) - 3],
        "bad magic": b"XXXXXXXX" + data[8:],
        "garbage": os.urandom(64),
        "empty": b"",
        "absurd length": data[:8] + b"\xff\xff\xff\x7f" + data[12:],
    }
    for name, content in cases.items():
        path = os.path.join(tmp, name.replace(" ", "_") + ".log")
        open(path, "wb").write(content)
        rc, _, err = replay(path, guest("hello"))
        lines = [l for l in err.splitlines() if l.strip()]
        check(rc == 2, f"{name} log: exit status 2 (got {rc})")
        check(any(re.search(rb"offset \d+", l) for l in lines), f"{name} log: error names an offset: {err!r}")
    rc, _, err = replay(log, guest("timer"))
    check(rc == 2 and b"not the guest this log was recorded with" in err, f"wrong guest refused: {err!r}")
    rc, _, err = replay(os.path.join(tmp, "missing.log"), guest("hello"))
    check(rc == 2, "missing log: exit 2")


def case_interrupted_recording_stays_readable(tmp):
    log = os.path.join(tmp, "killed.log")
    proc = subprocess.Popen([TANDEM, "record", "--log", log, "--console", "tcp:127.0.0.1:0",
                             "--time", "virtual", guest("plic_uart")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # plic_uart waits for input forever: give it time to boot and flush, then kill -9.
    deadline = time.time() + 30
    while time.time() < deadline and (not os.path.exists(log) or os.path.getsize(log) < 40):
        time.sleep(0.05)
    time.sleep(0.3)
    proc.kill()
    proc.communicate()
    rc, _, err = replay(log, guest("plic_uart"))
    check(rc == 0 and b"without an END record" in err,
          f"a killed recorder's log replays up to its last batch (rc {rc}, {err[-200:]!r})")


def start_tcp_recording(log, elf, extra=()):
    """Starts `tandem record` of `elf` with a TCP console; returns (process, port)."""
    proc = subprocess.Popen([TANDEM, "record", "--log", log, "--console", "tcp:127.0.0.1:0", *extra, elf],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while True:
        line = proc.stderr.readline()
        if not line:
            return proc, None
        m = re.search(rb"console listening on tcp:127\.0\.0\.1:(\d+)", line)
        if m:
            return proc, int(m.group(1))


def read_until(sock, received, done):
    """Reads from `sock` until done(received + what arrived) holds; returns all of it."""
    while not done(received):
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def case_replay_of_killed_interactive_session_ends(tmp):
    """Issue 20, finding 9: the log of a recorder killed by SIGKILL ends cleanly at a frame
    boundary; its replay must end there too (status 0, the icount it reached). The guest
    answers its console by polling, never waiting (memfill: `s` -> its pass count), so
    nothing but the end of the log can stop the replay: before the fix it ran on forever."""
    log = os.path.join(tmp, "interactive_killed.log")
    proc, port = start_tcp_recording(log, guest("memfill_small"))  # wall time, as an operator records
    check(port is not None, "the recorder of the interactive guest listens")
    if port is None:
        proc.kill()
        proc.communicate()
        return
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.settimeout(60)
        received = read_until(s, received, lambda r: b"memfill: ready\n" in r)
        for n in (1, 2, 3):
            s.sendall(b"s")
            received = read_until(s, received, lambda r: len(re.findall(rb"memfill: passes \d+\n", r)) >= n)
        proc.kill()  # SIGKILL: no END record, the log ends after the last batch written
        proc.communicate()
    check(received.count(b"memfill: passes") == 3, f"the guest answered three requests ({received[-200:]!r})")
    try:
        r = subprocess.run([TANDEM, "replay", "--log", log, "--state-hash", guest("memfill_small")],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        check(False, "the replay of a killed recording ends by itself (it ran on past the end of the log)")
        return
    m = re.search(rb"the log ends at icount (\d+) without an END record", r.stderr)
    check(r.returncode == 0 and m is not None,
          f"the end of the log is the replay's outcome: status 0 and the icount reached (rc {r.returncode}, {r.stderr[-300:]!r})")
    sh = state_hash(r.stderr)
    check(m is not None and sh is not None and sh[1] == int(m.group(1)),
          f"the state hash is taken where the log ends ({sh}, {m.group(0) if m else None})")
    check(len(r.stdout) > 0 and received.startswith(r.stdout),
          f"the replay printed what the recording printed, up to the log's end ({r.stdout[-200:]!r})")


def case_replay_honours_sigterm(tmp):
    """A replay of a long CPU-bound recording stops on SIGTERM with status 130."""
    log = os.path.join(tmp, "forever.log")
    rec = subprocess.Popen([TANDEM, "record", "--log", log, "--time", "virtual", guest("bench_forever")],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Let the recording grow to a few hundred million instructions (audits, batches), then stop it.
    while rec.poll() is None and (not os.path.exists(log) or os.path.getsize(log) < 4096):
        time.sleep(0.05)
    rec.send_signal(signal.SIGINT)
    _, rerr = rec.communicate(timeout=60)
    check(rec.returncode == 130, f"the recorder stops on SIGINT with 130 (got {rec.returncode}: {rerr[-200:]!r})")
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen([TANDEM, "replay", "--log", log, guest("bench_forever")],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = proc.stdout.readline()  # the guest's first line: the replay is running
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            check(False, f"replay stops on {sig.name}")
            continue
        check(first.startswith(b"bench:") and proc.returncode == 130 and b"interrupted at icount" in err,
              f"replay stops on {sig.name} with status 130 (got {proc.returncode}: {err[-200:]!r})")


def main():
    tmp = tempfile.mkdtemp(prefix="tandem_rr_")
    try:
        for case in [case_interactive_tcp_session, case_wall_time_with_idle_and_adjustments,
                     case_edited_payload_fails_its_checksum, case_damaged_logs, case_interrupted_recording_stays_readable,
                     case_replay_of_killed_interactive_session_ends, case_replay_honours_sigterm]:
            print("==", case.__name__, flush=True)
            case(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
