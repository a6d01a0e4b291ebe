#!/usr/bin/env python3
"""Guest networking in the pair (issue 18, docs/networking.md), with real tandemd processes in
a private network namespace this test creates (root; exit 77 = skipped otherwise).

Case tx_held_until_ack (the bare-metal net_echo guest, one TAP per node):
  - the primary's TAP carries the guest's frames; the secondary's TAP has no carrier (its
    backend stays closed: a secondary transmits nothing);
  - with the secondary SIGSTOPped, a frame sent to the guest is received (NET_RX, shipped in
    the log) and echoed, but the echo is held by the output gate (tandemctl status shows it
    held, the TAP has not carried it) until the secondary acknowledges: SIGCONT releases it;
  - kill -9 of the primary: the secondary goes live, opens its TAP, announces the guest's MAC
    (RARP from the guest's MAC), and answers a frame sent to it.

Case tcp_failover (the Linux kv guest with networking; skipped when its kernel has none):
  - a bridge with both nodes' TAPs, the client on the bridge's address; it holds ONE TCP connection to
    the guest's kv service (port 5555, ip= on the kernel command line), writes unique keys,
    the primary is killed -9 mid-stream, the same connection carries on against the promoted
    secondary and every acknowledged key reads back.
"""
import argparse
import os
import select
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pair_harness as h  # noqa: E402

SKIP = 77
GUEST_MAC = "02:00:00:00:00:07"
PEER_MAC = "02:00:00:00:00:99"
ETH_P_ALL = 0x0003
ETHERTYPE_PROBE = 0x88B6  # local experimental; net_echo echoes whatever it receives
ETHERTYPE_RARP = 0x8035


def check(condition, message):
    if not condition:
        raise h.HarnessError(message)


def mac_bytes(text):
    return bytes(int(x, 16) for x in text.split(":"))


def sh(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise h.HarnessError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


def enter_namespace_or_skip():
    """Re-runs this script in a new network namespace (unshare --net) unless already inside."""
    if os.environ.get("TANDEM_NET_PAIR_NETNS") == "1":
        return
    if os.geteuid() != 0:
        print("SKIP: needs root (the test creates a network namespace with TAP devices)")
        sys.exit(SKIP)
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        print("SKIP: no network namespace support here (unshare --net failed)")
        sys.exit(SKIP)
    env = {**os.environ, "TANDEM_NET_PAIR_NETNS": "1"}
    os.execvpe("unshare", ["unshare", "--net", "--", sys.executable, *sys.argv], env)


def base_network():
    sh("ip", "link", "set", "lo", "up")
    # No IPv6 on the namespace's links: the host would send router solicitations and MLD
    # reports onto the TAPs, frames the echo guest would answer and the test does not expect.
    with open("/proc/sys/net/ipv6/conf/default/disable_ipv6", "w") as f:
        f.write("1\n")


def add_tap(name):
    sh("ip", "tuntap", "add", "dev", name, "mode", "tap")
    sh("ip", "link", "set", name, "up")


def carrier(name):
    # `ip`, not /sys/class/net: sysfs still shows the namespace the test was started in.
    return "NO-CARRIER" not in sh("ip", "-o", "link", "show", "dev", name)


class Sniffer:
    """An AF_PACKET socket on one TAP: frames the guest sent (what left the host) and a way
    to send frames to the guest."""

    def __init__(self, ifname):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((ifname, 0))
        self.ifname = ifname

    def send(self, dst, src, ethertype, payload):
        frame = mac_bytes(dst) + mac_bytes(src) + ethertype.to_bytes(2, "big") + payload
        self.sock.send(frame.ljust(60, b"\0"))

    def pending(self):
        """Every frame already received, without waiting (PACKET_OUTGOING ones, our own sends, skipped)."""
        frames = []
        while select.select([self.sock], [], [], 0)[0]:
            data, addr = self.sock.recvfrom(65536)
            if addr[2] != socket.PACKET_OUTGOING:
                frames.append(data)
        return frames

    def wait_for(self, match, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
                data, addr = self.sock.recvfrom(65536)
                if addr[2] != socket.PACKET_OUTGOING and match(data):
                    return data
        raise h.HarnessError(f"no {what} on {self.ifname} within {timeout} s")

    def close(self):
        self.sock.close()


def net_lines(ifname):
    return ["[net]", 'backend = "tap"', f'ifname = "{ifname}"', f'mac = "{GUEST_MAC}"']


def echo_of(payload):
    def match(frame):
        return (frame[0:6] == mac_bytes(PEER_MAC) and frame[6:12] == mac_bytes(GUEST_MAC)
                and frame[14:14 + len(payload)] == payload)
    return match


def case_tx_held_until_ack(build):
    base_network()
    add_tap("tapa")
    add_tap("tapb")
    with h.Cluster(build, guest="net_echo") as cluster:
        # Many heartbeat misses: the stopped secondary must stay "connected" while the test
        # looks at the held frame (a lost secondary would release it, standalone).
        b = cluster.node("b", "secondary", heartbeat_misses=300, extra_lines=net_lines("tapb"))
        a = cluster.node("a", "primary", peer_port=b.listen_port, heartbeat_misses=300,
                         extra_lines=net_lines("tapa"))
        sniff_a, sniff_b = Sniffer("tapa"), Sniffer("tapb")
        try:
            b.start()
            h.wait_until(lambda: os.path.exists(b.socket), 20, "the secondary's control socket")
            a.start()
            sniff_a.wait_for(lambda f: f[6:12] == mac_bytes(GUEST_MAC) and f[12:14] == b"\x88\xb5", 60,
                             "greeting from the guest")
            cluster.wait_protected(a, b, timeout=60)
            check(not carrier("tapb"), "the secondary opened its TAP (it must stay closed until it goes live)")
            check(not sniff_b.pending(), "the secondary's TAP carried a frame")

            # The output rule: the echo is produced but held while the secondary cannot ack.
            released_before = a.status()["output"]["net"]["released_items"]
            b.sigstop()
            sniff_a.pending()
            sniff_a.send(GUEST_MAC, PEER_MAC, ETHERTYPE_PROBE, b"probe-held")
            h.wait_until(lambda: a.status()["output"]["net"]["held_items"] >= 1, 30,
                         "the primary's gate to hold the guest's echo")
            check(not [f for f in sniff_a.pending() if echo_of(b"probe-held")(f)],
                    "the echo left the host before the secondary acknowledged it")
            s = a.status()  # still held after the look: the absence above proves the rule
            check(s["state"] == "PROTECTED" and s["output"]["net"]["held_items"] >= 1,
                    f"the echo should still be held: {s['state']} {s['output']['net']}")
            code, text, _ = a.ctl("status")
            check(code == 0 and "output net" in text and "held" in text, f"tandemctl status text:\n{text}")
            h.log("held: " + next(line for line in text.splitlines() if line.startswith("output net")))
            b.proc.send_signal(signal.SIGCONT)
            b.stopped = False
            sniff_a.wait_for(echo_of(b"probe-held"), 30, "echo released after the secondary's ack")
            s = a.status()["output"]["net"]
            check(s["held_items"] == 0 and s["released_items"] > released_before, f"after the ack: {s}")

            # Go-live: kill -9 the primary; the secondary opens its TAP and announces the MAC.
            a.kill9()
            b.wait_state("primary", "STANDALONE", timeout=60)
            sniff_b.wait_for(lambda f: f[6:12] == mac_bytes(GUEST_MAC) and f[12:14] == b"\x80\x35", 30,
                             "RARP announcement of the guest's MAC")
            check(carrier("tapb"), "the promoted node's TAP has no carrier")
            sniff_b.send(GUEST_MAC, PEER_MAC, ETHERTYPE_PROBE, b"probe-live")
            sniff_b.wait_for(echo_of(b"probe-live"), 30, "echo from the promoted node")
            h.log("PASS tx_held_until_ack: echo held until the ack, released after; go-live announced "
                  "the MAC and the promoted node answers on its TAP")
        finally:
            sniff_a.close()
            sniff_b.close()


GUEST_IP = "10.77.3.10"
CLIENT_IP = "10.77.3.1"
KV_PORT = 5555


def kernel_has_networking(linux):
    config = os.path.join(os.path.dirname(linux.kernel), "kernel.config")
    if not os.path.exists(config):
        return True  # not known: let the connection tell
    with open(config) as f:
        text = f.read()
    return "CONFIG_VIRTIO_NET=y" in text and "CONFIG_IP_PNP=y" in text


class TcpKv:
    """ONE TCP connection to the guest's kv service, line by line; never reconnects."""

    def __init__(self, timeout):
        def attempt():
            return socket.create_connection((GUEST_IP, KV_PORT), timeout=2)
        self.sock = h.wait_until(attempt, timeout, f"the guest's kv service on {GUEST_IP}:{KV_PORT}", interval=0.5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, line):
        self.sock.sendall(line.encode() + b"\n")

    def reply(self, timeout):
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            data = self.sock.recv(4096)  # ConnectionResetError / EOF: the connection did not survive
            if not data:
                raise h.HarnessError("the guest closed the connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace").rstrip("\r")

    def ask(self, line, timeout=60):
        self.send(line)
        return self.reply(timeout)


def case_tcp_failover(build):
    linux = h.LinuxImages(build)
    if linux.missing:
        print(f"SKIP: the Linux guest images are missing: {', '.join(linux.missing)} (TANDEM_LINUX_IMAGES=DIR)")
        sys.exit(SKIP)
    if not kernel_has_networking(linux):
        print("SKIP: the Linux guest kernel has no networking (CONFIG_VIRTIO_NET, CONFIG_IP_PNP)")
        sys.exit(SKIP)
    linux.append = f"{linux.APPEND} ip={GUEST_IP}::{CLIENT_IP}:255.255.255.0::eth0:off"
    base_network()
    # Two hypervisor hosts on one switch: both nodes' TAPs on one bridge, the client (this
    # namespace) on the bridge's own address.
    sh("ip", "link", "add", "br0", "type", "bridge")
    sh("ip", "addr", "add", f"{CLIENT_IP}/24", "dev", "br0")
    sh("ip", "link", "set", "br0", "up")
    for tap in ("tapa", "tapb"):
        add_tap(tap)
        sh("ip", "link", "set", tap, "master", "br0")
    with h.Cluster(build, linux=linux) as cluster:
        b = cluster.node("b", "secondary", extra_lines=net_lines("tapb"))
        a = cluster.node("a", "primary", peer_port=b.listen_port, extra_lines=net_lines("tapa"))
        b.start()
        h.wait_until(lambda: os.path.exists(b.socket), 20, "the secondary's control socket")
        a.start()
        cluster.wait_protected(a, b, timeout=120)
        kv = TcpKv(timeout=180)  # the guest boots under protection first
        acked = {}
        try:
            for i in range(20):
                key, value = f"k{i}", f"v{i}-{os.urandom(4).hex()}"
                check(kv.ask(f"SET {key} {value}") == "OK", f"SET {key} before the failover")
                acked[key] = value
            check(a.status()["state"] == "PROTECTED", "the pair should still be PROTECTED")
            # kill -9 with a write in flight: its reply may come from either node, or the
            # request is retransmitted by TCP to the promoted one; either way it is answered.
            key, value = "k-inflight", "v-inflight"
            kv.send(f"SET {key} {value}")
            killed = time.monotonic()
            a.kill9()
            reply = kv.reply(timeout=120)
            gap = time.monotonic() - killed
            check(reply == "OK", f"the in-flight SET answered {reply!r}")
            acked[key] = value
            b.wait_state("primary", "STANDALONE", timeout=60)
            for i in range(20, 30):
                key, value = f"k{i}", f"v{i}"
                check(kv.ask(f"SET {key} {value}") == "OK", f"SET {key} after the failover")
                acked[key] = value
            for key, value in acked.items():
                got = kv.ask(f"GET {key}")
                check(got == value, f"GET {key} after the failover: {got!r}, acknowledged {value!r}")
            h.log(f"PASS tcp_failover: one TCP connection, {len(acked)} acknowledged keys all present after "
                  f"kill -9 of the primary; the in-flight write answered {gap * 1000:.0f} ms after the kill")
        except (OSError, socket.timeout) as e:
            raise h.HarnessError(f"the TCP connection did not carry on: {e!r}") from None
        finally:
            kv.sock.close()


CASES = {"tx_held_until_ack": case_tx_held_until_ack, "tcp_failover": case_tcp_failover}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--case", required=True, choices=sorted(CASES))
    args = p.parse_args()
    enter_namespace_or_skip()
    try:
        CASES[args.case](args.build)
    except h.HarnessError as e:
        print(f"FAIL: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
