#!/usr/bin/env bash
# drills suite: long failover drills on a throwaway lab (tandemctl drill --lab), sized to
# finish in a few minutes: DRILL_KILL_ITERATIONS of kill-primary (default 60) and
# DRILL_PARTITION_ITERATIONS of partition-all (default 30; skipped without a witness): ~5 min.
# Prints each run's totals: failover p50/p99/max, unavailable, acked_lost, dual primaries.
set -euo pipefail
build=$(realpath "${1:-build}")
kill_iterations=${DRILL_KILL_ITERATIONS:-60}
partition_iterations=${DRILL_PARTITION_ITERATIONS:-30}
seed=${DRILL_SEED:-$(date +%s)}
if [ ! -x "$build/tools/tandemctl" ] || [ ! -x "$build/tools/tandemd" ] || [ ! -x "$build/tools/tandem-netsim" ] ||
   [ ! -e "$build/guest/kv.elf" ]; then
  cmake --build "$build" --target tandemd tandemctl tandem-netsim tandem-witness guests >/dev/null
fi
out=$(mktemp -d /tmp/tandem-bench-drills-XXXXXX)
trap 'rm -rf "$out"' EXIT

summarise() {  # report.json -> one line of totals
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["totals"]
def dist(d):
    return "none" if d is None else f"p50 {d['p50']:.0f} ms, p99 {d['p99']:.0f} ms, max {d['max']:.0f} ms"
print(f"  {r['drill']}: {t['iterations_passed']}/{t['iterations']} passed; failover {dist(t['failover_ms'])}; "
      f"unavailable {dist(t['unavailable_ms'])}; writes acked {t['writes_acked']}; "
      f"acked_lost {t['acked_lost']}; dual_primary_epochs {t['dual_primary_epochs']}; phantoms {t['phantoms']}"
      + (f"; aborted: {t['aborted']}" if t.get("aborted") else ""))
PY
}

status=0
run_drill() {  # NAME ITERATIONS
  local name=$1 iterations=$2 start end
  start=$(date +%s)
  echo "--- $name x $iterations (seed $seed)"
  "$build/tools/tandemctl" drill "$name" --lab --iterations "$iterations" --seed "$seed" \
      --report "$out/$name.json" | grep -v ': PASS ' || true
  end=$(date +%s)
  summarise "$out/$name.json"
  echo "  wall $((end - start)) s"
  python3 -c "import json,sys; sys.exit(0 if json.load(open('$out/$name.json'))['totals']['passed'] else 1)" || status=1
}

run_drill kill-primary "$kill_iterations"
if [ -x "$build/tools/tandem-witness" ]; then
  run_drill partition-all "$partition_iterations"
else
  echo "--- partition-all skipped: no tandem-witness in $build/tools"
fi
exit $status
