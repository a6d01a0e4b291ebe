#!/usr/bin/env bash
# deploy/install.sh into throwaway directories: --prefix alone (unprivileged tree) and
# DESTDIR + --prefix /usr (a package stage). Asserts the exact tree, the unit paths
# rewritten for the prefix, file modes, that a staged install touched nothing outside
# DESTDIR, and the usage errors. Usage: install_test.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: install_test.sh BUILD_DIR}
repo=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d /tmp/tandem-install-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

expected_tree() {  # paths relative to the prefix
  local p=""
  printf '%s\n' \
    "$p/bin/tandem" "$p/bin/tandem-netsim" "$p/bin/tandem-witness" "$p/bin/tandemctl" "$p/bin/tandemd" \
    "$p/lib/systemd/system/tandem-witness.service" "$p/lib/systemd/system/tandemd@.service" \
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
    ! grep -q "/usr/local/bin" "$f" || [ "$p" = /usr/local ] || fail "$u still names /usr/local/bin"
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
