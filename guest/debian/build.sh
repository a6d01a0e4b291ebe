#!/usr/bin/env bash
# Builds the Tandem Debian guest's root filesystem: an ext4 image for virtio-blk made of the
# unmodified Debian trixie riscv64 packages pinned in packages.lock (busybox-static,
# redis-server, redis-tools, sqlite3 and their dependency closure) plus the Tandem init.
#
#   guest/debian/build.sh OUT_DIR
#
# Output: OUT_DIR/debian.img (sparse, TANDEM_DEBIAN_IMAGE_MIB MiB, default 256). The work is
# skipped when its inputs (packages.lock, rootfs/, the scripts) are unchanged.
# The .debs come from Debian's archive through a private apt (apt-env.sh: its own sources,
# state and cache under ~/.cache/tandem/debian-apt, the host's apt untouched), which checks the
# InRelease signature and every hash; build.sh then checks each .deb against the SHA-256 in
# packages.lock, so a cached file that changed stops the build. Once the cache holds the
# pinned files nothing is downloaded again. No root, no riscv64 code on the host: dpkg-deb -x
# under fakeroot, mkfs.ext4 -d. Two builds give byte-identical images.
#
# Environment: TANDEM_DEBIAN_CACHE (the apt directory), TANDEM_DEBIAN_LOCK (another lock
# file), TANDEM_DEBIAN_OFFLINE=1 (never contact the archive: use the cached index).
# Exit status: 0 built or up to date, 2 a missing tool, 3 a package that cannot be fetched,
# 4 a cached .deb whose hash differs from the lock, else the failing step's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:?usage: build.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
lock="${TANDEM_DEBIAN_LOCK:-$here/packages.lock}"
size_mib="${TANDEM_DEBIAN_IMAGE_MIB:-256}"
epoch=1767225600  # 2026-01-01 00:00:00 UTC, every file's and the filesystem's time

die() { local rc="$1"; shift; echo "debian-guest: $*" >&2; exit "$rc"; }
for tool in apt-get dpkg-deb fakeroot mkfs.ext4 sha256sum python3; do
  command -v "$tool" >/dev/null || die 2 "$tool missing: run deploy/install-deps.sh"
done
[ -r "$lock" ] || die 2 "package lock $lock missing"
source "$here/apt-env.sh"

hash_of() { sha256sum "$@" | sha256sum | cut -c1-16; }
key="$size_mib-$(hash_of "$lock" "$here/build.sh" "$here/mkimage.sh" "$here/mke2fs.conf" \
    "$here/apt-env.sh" $(find "$here/rootfs" -type f | LC_ALL=C sort))"
# The paths in rootfs/ and their modes matter too, not only the contents.
key="$key-$(cd "$here/rootfs" && find . -printf '%p %m %y\n' | LC_ALL=C sort | sha256sum | cut -c1-16)"
if [ -f "$out/debian.img" ] && [ -f "$out/.image.stamp" ] && [ "$(cat "$out/.image.stamp")" = "$key" ]; then
  echo "debian-guest: $out/debian.img up to date"
  exit 0
fi
rm -f "$out/.image.stamp"

# 1. The pinned .debs: verified from the cache, the missing ones fetched with apt.
mapfile -t entries < <(grep -v '^\s*#' "$lock" | grep -v '^\s*$')
[ "${#entries[@]}" -gt 0 ] || die 2 "$lock pins no packages"
debs=() pins=() need=0
for entry in "${entries[@]}"; do
  read -r name version arch sha <<<"$entry"
  [ -n "$sha" ] || die 2 "$lock: malformed line '$entry' (want NAME VERSION ARCH SHA256)"
  pins+=("$name=$version")
  debs+=("$cache/archives/${name}_${version//:/%3a}_${arch}.deb")
done
check_cached() {  # 0 all present and matching; 1 some missing; exits 4 on a mismatch
  local missing=0 i got
  for i in "${!entries[@]}"; do
    read -r _ _ _ sha <<<"${entries[$i]}"
    if [ ! -f "${debs[$i]}" ]; then missing=1; continue; fi
    got="$(sha256sum "${debs[$i]}" | cut -d' ' -f1)"
    [ "$got" = "$sha" ] || die 4 "${debs[$i]}: SHA-256 $got, but $lock pins $sha: the cached package is corrupt or was tampered with. Delete it (rm '${debs[$i]}') and build again to fetch it from the archive."
  done
  return "$missing"
}
apt_setup || exit 2
if ! check_cached; then
  if [ "${TANDEM_DEBIAN_OFFLINE:-0}" != 1 ]; then
    echo "debian-guest: fetching Debian $suite riscv64 packages into $cache"
    apt_run apt-get update -q || die 3 "apt-get update against $mirror failed (network? signature?); see apt's message above"
  fi
  apt_run apt-get install --download-only -y -q "${pins[@]}" ||
    die 3 "apt could not fetch the pinned packages (see its message above). If a pinned version is gone from the archive (replaced by a trixie point release), run guest/debian/lock.sh and commit the new packages.lock."
  check_cached || die 3 "apt finished but pinned packages are still missing from $cache/archives"
fi

# 2. The image, under fakeroot (ownership, device nodes), from a fresh stage.
echo "debian-guest: building $out/debian.img (${#debs[@]} packages, ${size_mib} MiB)"
fakeroot -- bash "$here/mkimage.sh" "$out/rootfs" "$out/debian.img" "$size_mib" "$epoch" "${debs[@]}"
rm -rf "$out/rootfs"
cp "$lock" "$out/packages.lock"
echo "$key" > "$out/.image.stamp"
echo "debian-guest: $out/debian.img $(du -k "$out/debian.img" | cut -f1) KiB used of ${size_mib} MiB"
