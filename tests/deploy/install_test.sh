#!/usr/bin/env bash
# deploy/install.sh into throwaway directories: --prefix alone (unprivileged tree) and
# DESTDIR + --prefix /usr (a package stage). Asserts the exact tree, the unit paths
# rewritten for the prefix, file modes, that a staged install touched nothing outside
# DESTDIR, and the usage errors. Usage: install_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: install_test.sh BUILD_DIR}" && pwd)
repo=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d /tmp/tandem-install-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

expected_tree() {  # paths relative to the prefix
  local p=""
  printf '%s\n' \
    "$p/bin/tandem" "$p/bin/tandem-netsim" "$p/bin/tandem-witness" "$p/bin/tandemctl" "$p/bin/tandemd" \
    "$p/lib/systemd/system/tandem-witness.service" "$p/lib/systemd/system/tandemd@.service" \
    "$p/share/doc/tandem/README.md" "$p/share/doc/tandem/deploy.md" "$p/share/doc/tandem/fencing.md" \
    $(cd "$repo/deploy/examples" && ls *.toml *.md 2>/dev/null | sed "s|^|$p/share/tandem/examples/|")
  [ -x "$repo/deploy/ocf/tandem" ] && echo "$p/lib/ocf/resource.d/tandem/tandem"
  [ -f "$build/guest/kv.elf" ] && echo "$p/share/tandem/guests/kv.elf"
  return 0
}

check_tree() {  # $1 = stage root, $2 = prefix
  local root=$1 p=$2
  (cd "$root$p" && find . -type f | sed 's|^\.||' | sort) > "$tmp/got"
  [ "$(cd "$root" && find . -type f | wc -l)" = "$(wc -l < "$tmp/got")" ] || fail "files installed outside $root$p"
  expected_tree | sort > "$tmp/want"
  diff -u "$tmp/want" "$tmp/got" || fail "installed tree under $root$p differs (- expected, + got)"
}

check_units() {  # $1 = stage root, $2 = prefix: binaries run, units name the prefix
  local root=$1 p=$2
  for b in tandem tandemd tandemctl tandem-witness tandem-netsim; do
    [ -x "$root$p/bin/$b" ] || fail "$p/bin/$b not executable"
  done
  "$root$p/bin/tandemctl" --help >/dev/null || fail "installed tandemctl --help failed"
  for u in tandemd@.service tandem-witness.service; do
    local f="$root$p/lib/systemd/system/$u"
    grep -q "^ExecStart=$p/bin/" "$f" || fail "$u: ExecStart not rewritten to $p/bin"
    ! grep -q "/usr/local/" "$f" || [ "$p" = /usr/local ] || fail "$u still names /usr/local/"
    if grep -q '^Documentation=file://' "$f"; then
      doc=$(sed -n 's|^Documentation=file://||p' "$f")
      [ -f "$root$doc" ] || fail "$u: Documentation $doc not installed"
    fi
  done
}

# 1. --prefix into a temp dir, as an unprivileged-style install (--no-system).
out=$("$repo/deploy/install.sh" --build-dir "$build" --prefix "$tmp/prefix" --no-system 2>&1) \
  || { echo "$out"; fail "install.sh --prefix failed"; }
check_tree "$tmp/prefix" ""
check_units "" "$tmp/prefix"
grep -q "no user or state directories" <<<"$out" || fail "--no-system did not say it skipped the system part"
echo "ok: --prefix $tmp/prefix"

# 2. DESTDIR + --prefix /usr: files only under DESTDIR, even as root.
before=$(ls -la /etc/tandem /var/lib/tandem 2>&1 || true)
had_user=$(getent passwd tandem >/dev/null && echo yes || echo no)
out=$(DESTDIR="$tmp/stage" "$repo/deploy/install.sh" --build-dir "$build" --prefix /usr 2>&1) \
  || { echo "$out"; fail "DESTDIR install failed"; }
check_tree "$tmp/stage" /usr
check_units "$tmp/stage" /usr
grep -q "staged into DESTDIR" <<<"$out" || fail "DESTDIR install did not say it skipped the system part"
[ "$before" = "$(ls -la /etc/tandem /var/lib/tandem 2>&1 || true)" ] || fail "DESTDIR install touched /etc/tandem or /var/lib/tandem"
[ "$had_user" = "$(getent passwd tandem >/dev/null && echo yes || echo no)" ] || fail "DESTDIR install changed the tandem user"
echo "ok: DESTDIR=$tmp/stage --prefix /usr"

# 3. The installed units pass systemd-analyze verify (their binaries exist now).
if command -v systemd-analyze >/dev/null; then
  units="$tmp/units"; mkdir -p "$units"
  cp "$tmp/prefix/lib/systemd/system/tandem-witness.service" "$units/"
  # A template verifies as an instance; its config must exist (AssertPathExists).
  sed "s|/etc/tandem/%i.toml|$units/kv.toml|g" "$tmp/prefix/lib/systemd/system/tandemd@.service" > "$units/tandemd@kv.service"
  touch "$units/kv.toml"
  if ! verify=$(cd "$units" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no ./tandemd@kv.service ./tandem-witness.service 2>&1); then
    echo "$verify"; fail "systemd-analyze verify failed"
  fi
  # verify exits 0 on some warnings: any line naming our units is a finding.
  if grep -E "tandemd@kv.service|tandem-witness.service" <<<"$verify"; then fail "systemd-analyze verify complained"; fi
  echo "ok: systemd-analyze verify"
  # The hardening holds: exposure score (0 best .. 10) at most 2.0 (threshold is in tenths).
  for u in tandemd@kv.service tandem-witness.service; do
    if ! score=$(cd "$units" && systemd-analyze security --offline=true --threshold=20 "./$u" 2>&1); then
      echo "$score" | tail -40; fail "$u: systemd-analyze security exposure above 2.0"
    fi
    echo "ok: $(grep -o 'Overall exposure level.*' <<<"$score")"
  done
  # SystemCallFilter kills the daemon on a syscall outside the set: trace a real primary
  # (boot, console, control socket, SIGTERM) and check every syscall it made is allowed.
  if command -v strace >/dev/null && [ -f "$build/guest/kv.elf" ]; then
    sc="$tmp/sc"; mkdir -p "$sc"; truncate -s 1M "$sc/disk"
    "$tmp/prefix/bin/tandemctl" keygen --out "$sc/psk" 2>/dev/null
    printf '[node]\nname = "a"\nstate_dir = "%s"\n[vm]\nid = "kv"\nguest = "%s"\nmem_mib = 64\ndisk = "%s"\n[pair]\nrole = "primary"\nlisten = "127.0.0.1:0"\npsk_file = "%s"\n[console]\nlisten = "127.0.0.1:0"\n[control]\nsocket = "%s"\n' \
      "$sc/state" "$build/guest/kv.elf" "$sc/disk" "$sc/psk" "$sc/ctl.sock" > "$sc/a.toml"
    strace -f -qq -o "$sc/trace" "$tmp/prefix/bin/tandemd" --config "$sc/a.toml" >"$sc/log" 2>&1 &
    tracer=$!
    for _ in $(seq 100); do "$tmp/prefix/bin/tandemctl" -c "$sc/ctl.sock" status >/dev/null 2>&1 && break; sleep 0.1; done
    "$tmp/prefix/bin/tandemctl" -c "$sc/ctl.sock" status >/dev/null 2>&1 || { kill $tracer 2>/dev/null || true; cat "$sc/log"; fail "traced tandemd did not start"; }
    daemon=$("$tmp/prefix/bin/tandemctl" -c "$sc/ctl.sock" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
    kill -TERM "$daemon" || { cat "$sc/log"; tail -5 "$sc/trace"; fail "tandemd (pid $daemon) gone before SIGTERM"; }
    wait $tracer
    awk '$1 ~ /^[0-9]+$/ { s = $2; sub(/\(.*/, "", s); if (s ~ /^[a-z_0-9]+$/) print s }' "$sc/trace" | sort -u > "$sc/used"
    expand() { for g in "$@"; do systemd-analyze syscall-filter "$g" | grep -oE '^ +[a-z_0-9@-]+' | tr -d ' '; done; }
    groups=$(expand @system-service | grep '^@' | sort -u)
    { expand @system-service; expand $groups; } | grep -v '^@' | sort -u > "$sc/allowed"
    { expand @privileged @resources; } | grep -v '^@' | sort -u > "$sc/denied"
    [ "$(wc -l < "$sc/used")" -gt 20 ] || fail "the trace shows too few syscalls to judge: $(wc -l < "$sc/used")"
    bad=$( (comm -23 "$sc/used" "$sc/allowed"; comm -12 "$sc/used" "$sc/denied") | sort -u | tr '\n' ' ')
    [ -z "$bad" ] || fail "tandemd makes syscalls tandemd@.service's SystemCallFilter forbids: $bad"
    echo "ok: SystemCallFilter allows all $(wc -l < "$sc/used") syscalls a traced tandemd made"
  else
    echo "skip: strace or the kv guest missing: SystemCallFilter not checked against a trace"
  fi
else
  echo "skip: systemd-analyze not installed (apt-get install systemd)"
fi

# 4. tandemctl keygen (installed binary): 0600, 64 hex digits, fresh each time, never overwrites.
ctl="$tmp/prefix/bin/tandemctl"
(umask 000 && "$ctl" keygen --out "$tmp/a.psk" 2>/dev/null) || fail "keygen --out failed"
"$ctl" keygen --out "$tmp/b.psk" 2>/dev/null || fail "keygen --out failed"
[ "$(stat -c %a "$tmp/a.psk")" = 600 ] || fail "keygen file mode $(stat -c %a "$tmp/a.psk"), want 600 (even with umask 000)"
grep -Eqx '[0-9a-f]{64}' "$tmp/a.psk" || fail "keygen file is not 64 hex digits: $(cat "$tmp/a.psk")"
! cmp -s "$tmp/a.psk" "$tmp/b.psk" || fail "two keygen runs gave the same key"
cp "$tmp/a.psk" "$tmp/a.copy"
set +e
"$ctl" keygen --out "$tmp/a.psk" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q "File exists" "$tmp/err" || fail "keygen over an existing file: rc=$rc $(cat "$tmp/err")"
cmp -s "$tmp/a.psk" "$tmp/a.copy" || fail "keygen changed an existing key file"
"$ctl" keygen --bytes 8 >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "keygen --bytes 8 (too short): rc=$rc, want 2"
"$ctl" keygen --out "$tmp/no/such/dir/k" 2>/dev/null; rc=$?
[ $rc -eq 1 ] || fail "keygen into a missing directory: rc=$rc, want 1"
set -e
[ "$("$ctl" keygen --bytes 16 | wc -c)" = 33 ] || fail "keygen --bytes 16 to stdout: want 32 hex digits and a newline"
echo "ok: tandemctl keygen"

# 5. Usage errors: exit 2 with a message, nothing installed.
set +e
"$repo/deploy/install.sh" --prefix relative/dir --build-dir "$build" 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "must be absolute" "$tmp/err" || fail "relative --prefix: rc=$rc $(cat "$tmp/err")"
"$repo/deploy/install.sh" --bogus 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "unknown argument" "$tmp/err" || fail "unknown argument: rc=$rc"
"$repo/deploy/install.sh" --build-dir "$tmp/nowhere" --prefix "$tmp/p2" 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "not a configured build directory" "$tmp/err" || fail "missing build dir: rc=$rc"
[ ! -e "$tmp/p2" ] || fail "a failed install left $tmp/p2"
set -e
echo "ok: usage errors"
echo "PASS"
