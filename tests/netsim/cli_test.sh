#!/usr/bin/env bash
# End-to-end check of the tandem-netsim CLI: serve, every ctl command, clear errors for bad
# input, a scenario run with --exit-after-scenario, and a clean stop on SIGTERM.
set -euo pipefail
bin="$1"
dir=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cat > "$dir/links.toml" <<'TOML'
[[link]]
name = "repl"
listen = "127.0.0.1:0"
target = "127.0.0.1:9"
from = "primary"
to = "secondary"
[[link]]
name = "hb2"
protocol = "udp"
listen = "127.0.0.1:0"
target = "127.0.0.1:9"
from = "primary"
to = "secondary"
TOML
sock="$dir/ctl.sock"
"$bin" serve --config "$dir/links.toml" --control "$sock" --event-log "$dir/events.jsonl" --seed 5 \
  > "$dir/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || fail "control socket never appeared"
ctl() { "$bin" ctl --control "$sock" "$@"; }

ctl set repl delay --direction up delay=20ms jitter=1ms >/dev/null
ctl set hb2 loss probability=0.1 for=10s >/dev/null
ctl list | grep -q '"fault":"delay"' || fail "list does not show the delay"
ctl stats --json | grep -q '"name": "hb2"' || fail "stats --json misses a link"
ctl stats repl | grep -q 'connections: accepted 0' || fail "stats text"
ctl partition --name split --groups primary/secondary | grep -q '"cuts"' || fail "partition"
[ "$(ctl heal --name split)" = '{"healed":2,"ok":true}' ] || fail "heal should remove two cuts"
ctl clear >/dev/null
ctl list | grep -q 'repl: no faults' || fail "clear"

# Bad input: a clear error and exit status 1, and the server lives on.
if out=$(ctl set repl teleport 2>&1); then fail "unknown fault accepted"; fi
echo "$out" | grep -q "unknown fault 'teleport'" || fail "unclear error: $out"
if out=$(ctl set repl delay delay=-5ms 2>&1); then fail "negative delay accepted"; fi
echo "$out" | grep -q "negative" || fail "unclear error: $out"
if out=$(ctl set repl delay nonsense 2>&1); then fail "bad key=value accepted"; fi
if out=$(ctl set nolink stall 2>&1); then fail "unknown link accepted"; fi
echo "$out" | grep -q "unknown link 'nolink'" || fail "unclear error: $out"
ctl list >/dev/null || fail "server died after bad input"

kill -TERM "$server_pid"
for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$server_pid" 2>/dev/null; then fail "serve did not stop on SIGTERM"; fi
wait "$server_pid" || fail "serve exited with an error"
server_pid=""
grep -q '"event":"partition"' "$dir/events.jsonl" || fail "event log misses the partition"

# A scenario run that ends by itself.
cat > "$dir/drill.toml" <<'TOML'
[[step]]
at = "100ms"
link = "repl"
fault = "partition"
for = "100ms"
TOML
timeout 20 "$bin" serve --config "$dir/links.toml" --control "$sock" --scenario "$dir/drill.toml" \
  --event-log "$dir/drill.jsonl" --exit-after-scenario > "$dir/serve2.log" 2>&1 || fail "scenario run"
grep -q '"event":"scenario_end"' "$dir/drill.jsonl" || fail "scenario did not finish"

# A malformed scenario is refused before anything starts, naming line and key.
printf '[[step]]\nat = "1s"\nlink = "repl"\nfault = "delay"\ndelay = "fast"\n' > "$dir/bad.toml"
if out=$("$bin" check --scenario "$dir/bad.toml" 2>&1); then fail "bad scenario accepted"; fi
echo "$out" | grep -q "bad.toml:5, key 'delay'" || fail "unclear error: $out"
echo "cli ok"
