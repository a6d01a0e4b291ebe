#!/usr/bin/env bash
# The OCF agent deploy/ocf/tandem: ocf-tester on one instance (start, monitor, promote =
# cold boot, demote, stop, idempotence), then a pair driven the way Pacemaker would drive a
# promotable clone on two hosts (here two instances with their own configs on 127.0.0.1):
# start both, promote A, A protects B, demote A = planned failover, promote B, with a
# key written before the switch read back after it; bad parameters give the OCF codes.
# Skips (77) without ocf-tester (apt-get install resource-agents). Usage: ocf_test.sh BUILD_DIR
set -uo pipefail
build=$(cd "${1:?usage: ocf_test.sh BUILD_DIR}" && pwd)
repo=$(cd "$(dirname "$0")/../.." && pwd)
agent="$repo/deploy/ocf/tandem"
command -v ocf-tester >/dev/null || { echo "SKIP: ocf-tester not installed (apt-get install resource-agents)"; exit 77; }
[ -f "$build/guest/kv.elf" ] || { echo "SKIP: $build/guest/kv.elf not built"; exit 77; }
tmp=$(mktemp -d /tmp/tandem-ocf-test.XXXXXX)
export HA_RSCTMP="$tmp/rsctmp" OCF_ROOT=/usr/lib/ocf
mkdir -p "$HA_RSCTMP"
cleanup() {
  for n in a b solo; do
    OCF_RESOURCE_INSTANCE=$n OCF_RESKEY_config="$tmp/$n.toml" OCF_RESKEY_tandemd="$build/tools/tandemd" \
      OCF_RESKEY_tandemctl="$build/tools/tandemctl" "$agent" stop >/dev/null 2>&1
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; tail -20 "$HA_RSCTMP"/*.log 2>/dev/null; exit 1; }
"$build/tools/tandemctl" keygen --out "$tmp/psk" 2>/dev/null
read -r -a ports <<<"$(python3 -c 'import socket
s=[socket.socket() for _ in range(4)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')"

config() {  # NAME REPL_PORT PEER_PORT CONSOLE_PORT
  truncate -s 1M "$tmp/$1.disk"
  cat > "$tmp/$1.toml" <<TOML
[node]
name = "$1"
state_dir = "$tmp/$1.state"
[vm]
id = "kv"
guest = "$build/guest/kv.elf"
mem_mib = 64
disk = "$tmp/$1.disk"
[pair]
role = "primary"
listen = "127.0.0.1:$2"
${3:+peer = \"127.0.0.1:$3\"}
psk_file = "$tmp/psk"
[console]
listen = "127.0.0.1:$4"
[control]
socket = "$tmp/$1.sock"
TOML
}
ra() {  # ra INSTANCE ACTION: the agent as Pacemaker runs it; prints nothing, returns its code
  OCF_RESOURCE_INSTANCE=$1 OCF_RESKEY_config="$tmp/$1.toml" OCF_RESKEY_tandemd="$build/tools/tandemd" \
    OCF_RESKEY_tandemctl="$build/tools/tandemctl" OCF_RESKEY_CRM_meta_timeout=60000 "$agent" "$2" >/dev/null 2>&1
}
expect() {  # expect CODE INSTANCE ACTION
  ra "$2" "$3"; local rc=$?
  [ $rc -eq "$1" ] || fail "$2 $3: OCF code $rc, want $1"
}
role_of() { "$build/tools/tandemctl" --control "$tmp/$1.sock" status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["role"], d["state"])'; }
kv() {  # kv PORT COMMAND: the first reply line
  python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall((sys.argv[2] + "\n").encode())
buf = b""
while True:
    chunk = s.recv(4096)
    if not chunk: break
    buf += chunk
    lines = [l for l in buf.decode(errors="replace").splitlines() if not l.startswith("tandem-kv")]
    if lines and buf.endswith(b"\n"): print(lines[0]); break
PY
}

# 1. ocf-tester on one instance.
config solo "${ports[0]}" "" "${ports[1]}"
out=$(timeout 240 ocf-tester -n solo -o config="$tmp/solo.toml" -o tandemd="$build/tools/tandemd" \
        -o tandemctl="$build/tools/tandemctl" "$agent" 2>&1) || { echo "$out"; fail "ocf-tester"; }
grep -q "passed all tests" <<<"$out" || { echo "$out"; fail "ocf-tester did not pass"; }
echo "ok: ocf-tester"

# 2. Bad parameters: OCF_ERR_CONFIGURED (6) / OCF_ERR_INSTALLED (5); probes say not running.
OCF_RESKEY_config='' "$agent" validate-all >/dev/null 2>&1; [ $? -eq 6 ] || fail "no config: want 6"
OCF_RESKEY_config="$tmp/missing.toml" "$agent" validate-all >/dev/null 2>&1; [ $? -eq 5 ] || fail "missing config: want 5"
OCF_RESKEY_config="$tmp/missing.toml" "$agent" monitor >/dev/null 2>&1; [ $? -eq 7 ] || fail "probe without config: want 7"
printf '[node]\nname = "x"\n' > "$tmp/nocontrol.toml"
OCF_RESKEY_config="$tmp/nocontrol.toml" OCF_RESKEY_tandemd="$build/tools/tandemd" OCF_RESKEY_tandemctl="$build/tools/tandemctl" \
  "$agent" validate-all >/dev/null 2>&1; [ $? -eq 6 ] || fail "config without [control] socket: want 6"
echo "ok: bad parameters"

# 3. A pair as a promotable clone: A (peer = B) and B (peer = A), ports 2,3 = replication.
rm -rf "$tmp"/solo.*
read -r -a p <<<"$(python3 -c 'import socket
s=[socket.socket() for _ in range(4)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')"
config a "${p[0]}" "${p[1]}" "${p[2]}"
config b "${p[1]}" "${p[0]}" "${p[3]}"
expect 7 a monitor; expect 7 b monitor
expect 0 a start; expect 0 b start
[ "$(role_of a)" = "secondary STANDBY" ] || fail "started a: $(role_of a)"
expect 0 a promote          # cold boot, protects B ([pair] peer)
expect 8 a monitor
for _ in $(seq 300); do [ "$(role_of b)" = "secondary PROTECTED" ] && break; sleep 0.2; done
[ "$(role_of b)" = "secondary PROTECTED" ] || fail "b not protected: $(role_of b)"
[ "$(kv "${p[2]}" "SET ocf 7")" = OK ] || fail "SET on a"
expect 0 a demote           # planned failover: a hands the VM to b
expect 0 a monitor
expect 0 b promote          # b is already primary: promote confirms
expect 8 b monitor
[ "$(kv "${p[3]}" "GET ocf")" = "VALUE 7" ] || [ "$(kv "${p[3]}" "GET ocf")" = 7 ] || fail "GET on b after the switch: $(kv "${p[3]}" "GET ocf")"
expect 0 a stop; expect 0 b stop
expect 7 a monitor; expect 7 b monitor
echo "ok: promotable pair (start, promote, demote = failover, promote, stop)"
echo PASS
