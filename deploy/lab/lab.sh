#!/usr/bin/env bash
# deploy/lab/lab.sh: a two-host Tandem deployment rehearsed on one machine, in network
# namespaces (needs root: ip netns, veth, nftables).
#
#   lab.sh up     [--build-dir DIR] [--state-dir DIR]   create, start, wait for PROTECTED
#   lab.sh down   [--state-dir DIR]                      remove everything `up` created
#   lab.sh status [--state-dir DIR]                      both nodes' tandemctl status
#   lab.sh partition link|all  /  lab.sh heal            nftables drop rules on host A
#   lab.sh reprotect                                     after a failover: the lost node comes
#                                                        back as a fresh secondary, protected
#   lab.sh exec NS CMD...                                run CMD in a lab namespace
#
# Topology (addresses exist only inside the namespaces; nothing is added to the host's
# own network namespace):
#
#   tlab-host-a ──veth── tlab-host-b       replication link 10.77.1.0/24 (.1 A, .2 B)
#   tlab-host-a ─┐                         management      10.77.2.0/24 (.1 A, .2 B, .3 witness)
#   tlab-host-b ─┴─ bridge in tlab-witness   (witness traffic, second heartbeat path)
#   tlab-host-a ─┐                         client          10.77.3.0/24 (.1 A, .2 B, .10 client)
#   tlab-host-b ─┴─ bridge in tlab-client    (the guest console; drills run here)
#
# Host A's outgoing paths (replication, second heartbeat, witness) go through one
# tandem-netsim in tlab-host-a (links repl, hb2, witness-p: `tandem-netsim ctl --control
# STATE/netsim.sock set repl delay ms=50`, and `tandemctl drill ... --netsim`).
# Everything `up` creates is written to STATE/created (one "kind name" a line) before it is
# created, so `down` removes exactly that, even after a failed or interrupted `up`.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
build_dir="$repo/build"
state_dir=/tmp/tandem-lab
prefix=tlab
namespaces=(host-a host-b witness client)

die() { echo "lab: $*" >&2; exit 1; }
usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; }

cmd=${1:-}
[ -n "$cmd" ] || { usage >&2; exit 2; }
shift
case "$cmd" in
  -h|--help|help) usage; exit 0 ;;
esac
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir=${2:?--build-dir needs a value}; shift 2 ;;
    --state-dir) state_dir=${2:?--state-dir needs a value}; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
build_dir=$(cd "$build_dir" 2>/dev/null && pwd || echo "$build_dir")
bin="$build_dir/tools"
ns() { echo "$prefix-$1"; }
record() { echo "$1 $2" >> "$state_dir/created"; }
in_ns() { local n; n=$(ns "$1"); shift; ip netns exec "$n" "$@"; }

need_root() {
  [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces); try: sudo $0 $cmd"
  ip netns list >/dev/null 2>&1 || die "'ip netns' is not usable here"
}

# --- down --------------------------------------------------------------------------------
lab_down() {
  [ -f "$state_dir/created" ] || { echo "lab: nothing to remove ($state_dir/created absent)"; return 0; }
  local kind name
  # Processes first (recorded pids, then anything still inside our namespaces), newest first.
  tac "$state_dir/created" | while read -r kind name; do
    if [ "$kind" = pid ] && kill -0 "$name" 2>/dev/null; then
      kill -CONT "$name" 2>/dev/null || true   # a frozen one (freeze drill) must see SIGTERM
      kill -TERM "$name" 2>/dev/null || true
    fi
  done
  for _ in $(seq 50); do
    local alive=0
    while read -r kind name; do
      [ "$kind" = pid ] && kill -0 "$name" 2>/dev/null && alive=1
      [ "$kind" = netns ] && [ -n "$(ip netns pids "$name" 2>/dev/null)" ] && alive=1
    done < "$state_dir/created"
    [ $alive = 0 ] && break
    sleep 0.1
  done
  while read -r kind name; do
    [ "$kind" = pid ] && kill -KILL "$name" 2>/dev/null || true
    if [ "$kind" = netns ]; then
      for p in $(ip netns pids "$name" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    fi
  done < "$state_dir/created"
  sleep 0.2
  # Deleting a namespace deletes its veth ends, and with them their peers; a veth that was
  # created but not yet moved lives in the host namespace: delete it by name.
  tac "$state_dir/created" | while read -r kind name; do
    case "$kind" in
      netns) ip netns del "$name" 2>/dev/null || true ;;
      link) ip link del "$name" 2>/dev/null || true ;;
    esac
  done
  rm -rf "$state_dir"
  echo "lab: removed everything it created"
}

# --- up ----------------------------------------------------------------------------------
veth() {  # veth NAME_A NS_A NAME_B NS_B: a pair, one end in each namespace
  record link "$1"; record link "$3"
  ip link add "$1" type veth peer name "$3"
  ip link set "$1" netns "$(ns "$2")"
  ip link set "$3" netns "$(ns "$4")"
  in_ns "$2" ip link set "$1" up
  in_ns "$4" ip link set "$3" up
}

bridge() {  # bridge NS NAME ADDR
  in_ns "$1" ip link add "$2" type bridge
  in_ns "$1" ip addr add "$3" dev "$2"
  in_ns "$1" ip link set "$2" up
}

start() {  # start NS NAME CMD...: a background process in a namespace, logged and recorded
  local n=$1 name=$2; shift 2
  ip netns exec "$(ns "$n")" "$@" > "$state_dir/$name.log" 2>&1 < /dev/null &
  local pid=$!
  record pid "$pid"
  echo "$pid" > "$state_dir/$name.pid"
}

wait_until() {  # wait_until SECONDS WHAT CMD...
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || die "timed out after ${limit}s waiting for $what (logs: $state_dir/*.log)"
    sleep 0.2
  done
}

node_state() { "$bin/tandemctl" --control "$state_dir/$1.sock" --timeout 2 status --json 2>/dev/null \
  | python3 -c 'import json,sys; print(json.load(sys.stdin).get("state",""))' 2>/dev/null; }
node_role() { "$bin/tandemctl" --control "$state_dir/$1.sock" --timeout 2 status --json 2>/dev/null \
  | python3 -c 'import json,sys; print(json.load(sys.stdin).get("role",""))' 2>/dev/null; }
is_protected() { [ "$(node_state "$1")" = PROTECTED ]; }

# The lab runs the shipped examples (deploy/examples/host-a.toml, host-b.toml: the same
# addresses), with only the paths moved into the state dir and host A's outgoing paths
# pointed at its netsim: what works here is what an operator installs.
write_node_config() {  # write_node_config HOST (host-a | host-b) [GUEST]
  local name=$1 guest=${2:-}
  local example="$repo/deploy/examples/$name.toml" out="$state_dir/$name.toml"
  [ -f "$example" ] || die "$example missing"
  mkdir -p "$state_dir/$name"
  truncate -s 1M "$state_dir/$name/disk.img"
  local subst=(
    -e "s|\"/etc/tandem/pair.psk\"|\"$state_dir/pair.psk\"|"
    -e "s|\"/var/lib/tandem/kv.elf\"|\"$guest\"|"
    -e "${guest:+#}/^guest = /d"                            # a secondary needs no guest
    -e "s|\"/var/lib/tandem/kv.disk\"|\"$state_dir/$name/disk.img\"|"
    -e "s|\"/var/lib/tandem/kv\"|\"$state_dir/$name/state\"|"
    -e "s|\"/run/tandem/kv.sock\"|\"$state_dir/$name.sock\"|"
    -e "s|^mem_mib = .*|mem_mib = 64|"
  )
  if [ "$name" = host-a ]; then
    subst+=(
      -e "s|^peer = \"10.77.1.2:7100\"|peer = \"10.77.1.1:7199\"|"
      -e "s|^heartbeat_peer = \"10.77.2.2:7110\"|heartbeat_peer = \"10.77.2.1:7119\"|"
      -e "s|^witness = \"10.77.2.3:7400\"|witness = \"10.77.2.1:7409\"|"
    )
  fi
  { echo "# deploy/examples/$name.toml as run by deploy/lab/lab.sh"; sed "${subst[@]}" "$example"; } > "$out"
  # An example that drifted from what the lab rewrites must not run with host paths.
  if grep -nE '^[^#]*"(/etc/tandem|/var/lib/tandem|/run/tandem)' "$out" >&2; then
    die "$example: a path above was not moved into the lab (lab.sh write_node_config)"
  fi
  if [ "$name" = host-a ] && [ "$(grep -cE '10\.77\.1\.1:7199|10\.77\.2\.1:7119|10\.77\.2\.1:7409' "$out")" != 3 ]; then
    die "$example: host A's peer, heartbeat_peer and witness were not all routed through netsim"
  fi
}

lab_up() {
  need_root
  command -v nft >/dev/null || die "nft not found (apt-get install nftables)"
  for t in tandemd tandemctl tandem-witness tandem-netsim; do
    [ -x "$bin/$t" ] || die "$bin/$t is not built (make build, or --build-dir DIR)"
  done
  local guest="$build_dir/guest/kv.elf"
  [ -f "$guest" ] || die "$guest is not built (cmake --build $build_dir --target guests)"
  [ ! -e "$state_dir/created" ] || die "a lab is already up (state in $state_dir); run: $0 down"
  for n in "${namespaces[@]}"; do
    ! ip netns list | grep -qw "$(ns "$n")" || die "namespace $(ns "$n") exists but is not ours; remove it first"
  done
  mkdir -p "$state_dir"
  chmod 0700 "$state_dir"
  : > "$state_dir/created"
  trap 'echo "lab: up failed; removing what was created" >&2; lab_down' ERR

  for n in "${namespaces[@]}"; do
    record netns "$(ns "$n")"
    ip netns add "$(ns "$n")"
    in_ns "$n" ip link set lo up
  done
  # Replication link: a direct cable between the hosts.
  veth tl-repl-a host-a tl-repl-b host-b
  in_ns host-a ip addr add 10.77.1.1/24 dev tl-repl-a
  in_ns host-b ip addr add 10.77.1.2/24 dev tl-repl-b
  # Management network: a switch (bridge) in the witness namespace.
  bridge witness tl-mgmt 10.77.2.3/24
  veth tl-mgmt-a host-a tl-mgmt-wa witness
  veth tl-mgmt-b host-b tl-mgmt-wb witness
  in_ns host-a ip addr add 10.77.2.1/24 dev tl-mgmt-a
  in_ns host-b ip addr add 10.77.2.2/24 dev tl-mgmt-b
  in_ns witness ip link set tl-mgmt-wa master tl-mgmt
  in_ns witness ip link set tl-mgmt-wb master tl-mgmt
  # Client network: a switch in the client namespace.
  bridge client tl-cli 10.77.3.10/24
  veth tl-cli-a host-a tl-cli-ca client
  veth tl-cli-b host-b tl-cli-cb client
  in_ns host-a ip addr add 10.77.3.1/24 dev tl-cli-a
  in_ns host-b ip addr add 10.77.3.2/24 dev tl-cli-b
  in_ns client ip link set tl-cli-ca master tl-cli
  in_ns client ip link set tl-cli-cb master tl-cli

  "$bin/tandemctl" keygen --out "$state_dir/pair.psk" 2>/dev/null

  start witness witness "$bin/tandem-witness" --listen 10.77.2.3:7400 \
    --state-file "$state_dir/witness.state" --psk-file "$state_dir/pair.psk"
  # Host A's netsim: its three outgoing paths, each on a local listener in host A.
  cat > "$state_dir/links.toml" <<TOML
# Host A's outgoing paths through netsim (names as in netsim/examples/links.toml).
seed = 1
[[link]]
name = "repl"
protocol = "tcp"
listen = "10.77.1.1:7199"
target = "10.77.1.2:7100"
from = "host-a"
to = "host-b"
[[link]]
name = "hb2"
protocol = "tcp"
listen = "10.77.2.1:7119"
target = "10.77.2.2:7110"
from = "host-a"
to = "host-b"
[[link]]
name = "witness-p"
protocol = "tcp"
listen = "10.77.2.1:7409"
target = "10.77.2.3:7400"
from = "host-a"
to = "witness"
TOML
  start host-a netsim "$bin/tandem-netsim" serve --config "$state_dir/links.toml" --control "$state_dir/netsim.sock"
  wait_until 20 "the witness" in_ns host-b bash -c 'exec 3<>/dev/tcp/10.77.2.3/7400'
  wait_until 20 "netsim" test -S "$state_dir/netsim.sock"

  write_node_config host-b
  start host-b host-b "$bin/tandemd" --config "$state_dir/host-b.toml"
  wait_until 30 "host-b's control socket" node_state host-b
  write_node_config host-a "$guest"
  start host-a host-a "$bin/tandemd" --config "$state_dir/host-a.toml"
  # A first sync can fail (a slow machine misses a heartbeat): the primary then runs
  # STANDALONE and is asked again, as an operator would (`tandemctl protect`).
  local end=$((SECONDS + 90))
  until is_protected host-a; do
    [ $SECONDS -lt $end ] || die "timed out waiting for host-a to protect host-b (logs: $state_dir/*.log)"
    if [ "$(node_state host-a)" = STANDALONE ] && [ "$(node_state host-b)" = STANDBY ]; then
      "$bin/tandemctl" --control "$state_dir/host-a.sock" protect 10.77.1.1:7199 >/dev/null 2>&1 || true
    fi
    sleep 0.5
  done
  trap - ERR

  cat <<TXT
lab: up: host-a PROTECTED by host-b, witness at 10.77.2.3:7400 (state: $state_dir)
  status:     $bin/tandemctl --control $state_dir/host-a.sock status
              $bin/tandemctl --control $state_dir/host-b.sock status
  the guest:  ip netns exec $(ns client) bash -c 'exec 3<>/dev/tcp/10.77.3.1/7300; echo "SET k v" >&3; head -1 <&3'
  a drill:    ip netns exec $(ns client) $bin/tandemctl drill kill-primary \\
                --control $state_dir/host-a.sock --peer-control $state_dir/host-b.sock --netsim $state_dir/netsim.sock
  a fault:    $bin/tandem-netsim ctl --control $state_dir/netsim.sock set repl delay ms=50
  partition:  $0 partition link|all ; $0 heal
  tear down:  make lab-down   (or $0 down)
TXT
}

# --- after a failover ---------------------------------------------------------------------
# The node that is gone comes back as a fresh secondary (an empty disk: a host that was
# replaced), and the live primary protects it: what an operator does after a failover.
reprotect() {
  need_root
  [ -f "$state_dir/created" ] || die "no lab is up (state: $state_dir)"
  local live="" dead="" n
  for n in host-a host-b; do
    if [ "$(node_role "$n")" = primary ] && [ "$(node_state "$n")" = STANDALONE ]; then live=$n; fi
  done
  [ -n "$live" ] || die "reprotect: no STANDALONE primary (status: $0 status)"
  dead=$([ "$live" = host-a ] && echo host-b || echo host-a)
  if [ -n "$(node_state "$dead")" ]; then
    kill -TERM "$(cat "$state_dir/$dead.pid")" 2>/dev/null || true
    wait_until 30 "$dead to stop" bash -c "! kill -0 $(cat "$state_dir/$dead.pid") 2>/dev/null"
  fi
  rm -rf "${state_dir:?}/$dead" "$state_dir/$dead.sock"
  write_node_config "$dead"
  start "$dead" "$dead" "$bin/tandemd" --config "$state_dir/$dead.toml" --role secondary
  wait_until 30 "$dead's control socket" node_state "$dead"
  local target
  target=$([ "$dead" = host-b ] && echo 10.77.1.1:7199 || echo 10.77.1.1:7100)
  local end=$((SECONDS + 90))
  until is_protected "$live"; do
    [ $SECONDS -lt $end ] || die "timed out waiting for $live to protect $dead"
    if [ "$(node_state "$live")" = STANDALONE ]; then
      "$bin/tandemctl" --control "$state_dir/$live.sock" protect "$target" >/dev/null 2>&1 || true
    fi
    sleep 0.5
  done
  echo "lab: $live PROTECTED by a fresh $dead"
}

# --- faults ------------------------------------------------------------------------------
partition() {  # nftables drop rules in host A: link = the replication cable, all = every path
  need_root
  local what=${1:-}
  local ifaces
  case "$what" in
    link) ifaces='"tl-repl-a"' ;;
    all) ifaces='"tl-repl-a", "tl-mgmt-a"' ;;
    *) die "partition: expected link or all" ;;
  esac
  in_ns host-a nft -f - <<NFT
table inet tandem_lab
delete table inet tandem_lab
table inet tandem_lab {
  chain in { type filter hook input priority 0; iifname { $ifaces } drop; }
  chain out { type filter hook output priority 0; oifname { $ifaces } drop; }
}
NFT
  echo "lab: host-a partitioned ($what)"
}
heal() { need_root; in_ns host-a nft delete table inet tandem_lab 2>/dev/null || true; echo "lab: healed"; }

case "$cmd" in
  up) lab_up ;;
  down) need_root; lab_down ;;
  status)
    for n in host-a host-b; do echo "== $n"; "$bin/tandemctl" --control "$state_dir/$n.sock" status || true; done ;;
  partition) partition "${args[0]:-}" ;;
  heal) heal ;;
  reprotect) reprotect ;;
  exec) need_root; [ ${#args[@]} -ge 2 ] || die "exec NS CMD..."; n=${args[0]}; in_ns "$n" "${args[@]:1}" ;;
  *) usage >&2; exit 2 ;;
esac
