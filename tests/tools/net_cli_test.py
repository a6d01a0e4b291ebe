#!/usr/bin/env python3
"""`tandem run|record --net` from the command line, with the bare-metal net_echo guest
(docs/networking.md): UDP datagrams sent to a forwarded port on 127.0.0.1 make libslirp look
for the guest (ARP), the guest echoes each frame it receives and passes after four;
`tandem replay` without any network reproduces the recorded run (same console output, same
state hash, transmitted-frames digest checked). Bad --net specs and a forward onto a port in
use exit 2 with a line saying why. Stdlib only."""
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

STATE_HASH = re.compile(r"state-hash=([0-9a-f]+) icount=(\d+)")
TIMEOUT = 120


def free_port(kind=socket.SOCK_DGRAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_with_traffic(cmd, port):
    """Runs `cmd`, sending a datagram to 127.0.0.1:port every 20 ms until it exits."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    done = threading.Event()

    def send():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while not done.wait(0.02):
                s.sendto(b"ping", ("127.0.0.1", port))

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        done.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.decode("latin-1"), err.decode(errors="replace")


def check(cond, what, detail=""):
    if not cond:
        print(f"FAIL: {what}\n{detail}")
        sys.exit(1)


def main():
    tandem, guest_dir = sys.argv[1], sys.argv[2]
    guest = os.path.join(guest_dir, "net_echo.elf")

    # Bad specifications: exit 2, one line naming the problem, the guest never runs.
    for spec, needle in (("bogus", "--net bogus"), ("user,hostfwd=tcp::0-:80", "port"),
                         ("tap", "ifname"), ("user,mtu=20", "mtu")):
        r = subprocess.run([tandem, "run", "--net", spec, guest], capture_output=True, text=True,
                           timeout=TIMEOUT)
        check(r.returncode == 2 and needle in r.stderr and r.stdout == "",
              f"--net {spec}: exit {r.returncode}", r.stderr)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = subprocess.run([tandem, "run", "--net", f"user,hostfwd=tcp:127.0.0.1:{port}-:80", guest],
                           capture_output=True, text=True, timeout=TIMEOUT)
        check(r.returncode == 2 and str(port) in r.stderr, f"forward onto a busy port: exit {r.returncode}",
              r.stderr)

    # tandem run: frames reach the guest and its echoes go out.
    port = free_port()
    status, out, err = run_with_traffic(
        [tandem, "run", "--net", f"user,hostfwd=udp:127.0.0.1:{port}-:7", guest], port)
    check(status == 0 and "net: echoed 4 frames" in out, f"run: exit {status}", out + err)

    # tandem record, then replay without a network.
    with tempfile.TemporaryDirectory(prefix="tandem-net-cli-") as tmp:
        log = os.path.join(tmp, "net.log")
        port = free_port()
        status, rec_out, rec_err = run_with_traffic(
            [tandem, "record", "--log", log, "--state-hash", "--net",
             f"user,hostfwd=udp:127.0.0.1:{port}-:7,mac=02:00:00:00:00:07", guest], port)
        check(status == 0 and "mac 02:00:00:00:00:07" in rec_out, f"record: exit {status}", rec_out + rec_err)
        rec = STATE_HASH.search(rec_err)
        check(rec is not None, "record printed no state hash", rec_err)
        r = subprocess.run([tandem, "replay", "--log", log, "--state-hash", guest], capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=TIMEOUT)
        rep_err = r.stderr.decode(errors="replace")
        rep = STATE_HASH.search(rep_err)
        check(r.returncode == 0 and rep is not None and rep.groups() == rec.groups(),
              f"replay: exit {r.returncode}, {rep and rep.groups()} vs {rec.groups()}", rep_err)
        check(r.stdout.decode("latin-1") == rec_out, "the replay's console differs from the recording's",
              r.stdout.decode("latin-1") + "\n---\n" + rec_out)
    print(f"PASS: bad specs refused; run and record echo 4 frames; replay without a network matches "
          f"(state-hash {rec.group(1)} at icount {rec.group(2)})")


if __name__ == "__main__":
    main()
