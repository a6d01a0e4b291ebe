#!/usr/bin/env bash
# Builds the Tandem Linux guest: a riscv64 kernel Image from the Debian linux-source-6.1
# tarball plus tandem.config, and an initramfs holding the static kv init (init/).
#
#   guest/linux/build.sh OUT_DIR [FRAGMENT...]
#
# Outputs in OUT_DIR: Image, vmlinux (symbols), initramfs.cpio, init (the ELF), kernel.config.
# Extra FRAGMENTs (file names in guest/linux, e.g. debian.config) are merged after
# tandem.config, later lines winning; such a variant builds the kernel only (no initramfs):
# the Debian guest's root is a disk image (guest/debian).
# Work is skipped when its inputs are unchanged (hash stamps, not mtimes): the kernel is keyed
# on the source package version, tandem.config and `kernel_recipe` below; the initramfs on
# init/*, the shared kv sources (guest/kv: store.c, persist.c, protocol.c, kv.h),
# initramfs.list and this script. The build is reproducible
# (fixed build user/host/timestamp, stripped /init, cpio mtimes 0): the same inputs give the
# same bytes and the same boot console on every machine.
# Exit status: 0 built or up to date, 2 a missing tool or a fragment that does not apply,
# else the failing step's (make, gcc).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:?usage: build.sh OUT_DIR [FRAGMENT...]}"
shift
fragments=("$here/tandem.config")
for f in "$@"; do fragments+=("$here/$f"); done
mkdir -p "$out"
out="$(cd "$out" && pwd)"

tarball=/usr/src/linux-source-6.1.tar.xz
cross=riscv64-linux-gnu-
jobs="${JOBS:-2}"
src="$out/linux-source-6.1"

die() { echo "linux-guest: $*" >&2; exit 2; }
for f in "${fragments[@]}"; do [ -r "$f" ] || die "config fragment $f missing"; done
[ -r "$tarball" ] || die "$tarball missing: run deploy/install-deps.sh (package linux-source-6.1)"
command -v "${cross}gcc" >/dev/null || die "${cross}gcc missing: run deploy/install-deps.sh (gcc-riscv64-linux-gnu)"

hash_of() { sha256sum "$@" | sha256sum | cut -c1-16; }
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# 1. The kernel source, extracted once per package version.
src_key="$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || stat -c %s-%Y "$tarball")"
if ! stamp_ok "$out/.source.stamp" "$src_key"; then
  echo "linux-guest: extracting $tarball ($src_key)"
  rm -rf "$src" "$out/.source.stamp" "$out/.kernel.stamp" "$out/.initramfs.stamp" \
      "$out/Image" "$out/kernel.config"
  tar -xJf "$tarball" -C "$out"
  echo "$src_key" > "$out/.source.stamp"
fi

# Fixed identity so the banner and the Image bytes do not depend on who built them, when.
export KBUILD_BUILD_USER=tandem KBUILD_BUILD_HOST=tandem
export KBUILD_BUILD_TIMESTAMP="Thu Jan  1 00:00:00 UTC 2026" KBUILD_BUILD_VERSION=1
cc="${cross}gcc"
# ccache keyed relative to the source tree, so a fresh clone (CI) reuses this machine's objects.
if command -v ccache >/dev/null; then
  cc="ccache ${cross}gcc"
  export CCACHE_BASEDIR="$src" CCACHE_NOHASHDIR=1
fi
kmake=(make -C "$src" ARCH=riscv CROSS_COMPILE="$cross" CC="$cc" -j"$jobs")

# 2. The kernel.
# Bump when the kernel steps below change (editing the rest of this script must not cost a
# kernel rebuild).
kernel_recipe=1
kernel_key="$src_key-$kernel_recipe-$(hash_of "${fragments[@]}")"
names="$(for f in "${fragments[@]}"; do basename "$f"; done | paste -sd+)"
if ! stamp_ok "$out/.kernel.stamp" "$kernel_key" || [ ! -f "$out/Image" ]; then
  echo "linux-guest: configuring (allnoconfig + $names)"
  rm -f "$out/.kernel.stamp"
  # allnoconfig with the fragments as KCONFIG_ALLCONFIG: what no fragment names is
  # off (or, for symbols without a prompt, its default).
  (cd "$src" && ARCH=riscv CROSS_COMPILE="$cross" CC="$cc" \
      scripts/kconfig/merge_config.sh -n /dev/null "${fragments[@]}" >/dev/null)
  # merge_config only warns when a symbol did not survive (missing dependency, renamed);
  # fail instead, so a fragment cannot silently stop meaning what it says. A symbol named
  # in several fragments is checked against its last setting.
  declare -A want=()
  order=()
  while IFS= read -r line; do
    case "$line" in
      CONFIG_*=*) sym="${line%%=*}" ;;
      "# CONFIG_"*" is not set") sym="${line#\# }"; sym="${sym%% *}" ;;
      *) continue ;;
    esac
    [ -n "${want[$sym]+x}" ] || order+=("$sym")
    want[$sym]="$line"
  done < <(cat "${fragments[@]}")
  missing=0
  for sym in "${order[@]}"; do
    line="${want[$sym]}"
    case "$line" in
      CONFIG_*=*) grep -qxF "$line" "$src/.config" || { echo "linux-guest: not in .config: $line" >&2; missing=1; } ;;
      *) if grep -q "^$sym=" "$src/.config"; then echo "linux-guest: still set: $sym" >&2; missing=1; fi ;;
    esac
  done
  [ "$missing" -eq 0 ] || die "$names does not apply cleanly to linux-source $src_key"
  # A fragment edit that leaves the resulting .config unchanged (a comment, a line another
  # fragment overrides) costs no kernel build.
  if [ -f "$out/Image" ] && [ -f "$out/kernel.config" ] && cmp -s "$src/.config" "$out/kernel.config"; then
    echo "linux-guest: .config unchanged, keeping $out/Image"
  else
    echo "linux-guest: building Image (-j$jobs)"
    start=$(date +%s)
    "${kmake[@]}" -s Image
    echo "linux-guest: kernel built in $(( $(date +%s) - start ))s"
    cp "$src/arch/riscv/boot/Image" "$out/Image.tmp" && mv "$out/Image.tmp" "$out/Image"
    cp "$src/vmlinux" "$out/vmlinux"
    cp "$src/.config" "$out/kernel.config"
  fi
  echo "$kernel_key" > "$out/.kernel.stamp"
fi

if [ $# -gt 0 ]; then
  echo "linux-guest: $out/Image $(stat -c %s "$out/Image") bytes ($names)"
  exit 0
fi

# 3. Userspace: the static init and the initramfs.
# The table, the disk format and the protocol are the bare-metal kv guest's own files,
# compiled unchanged.
kv="$here/../kv"
kv_shared=("$kv/store.c" "$kv/persist.c" "$kv/protocol.c")
init_sources=("$here"/init/*.c "$here/init/start.S" "${kv_shared[@]}")
initramfs_key="$src_key-$(hash_of "$here"/init/* "${kv_shared[@]}" "$kv/kv.h" \
    "$here"/fptest/* "$here/initramfs.list" "$here/build.sh")"
if ! stamp_ok "$out/.initramfs.stamp" "$initramfs_key" || [ ! -f "$out/initramfs.cpio" ]; then
  rm -f "$out/.initramfs.stamp"
  "${cross}gcc" -march=rv64imac -mabi=lp64 -static -nostdlib -ffreestanding -fno-builtin \
      -fno-tree-loop-distribute-patterns -fno-stack-protector -fno-pic -no-pie \
      -fno-asynchronous-unwind-tables -O2 -Wall -Wextra -Werror -I "$here/init" -I "$kv" \
      -s -Wl,--build-id=none -Wl,-e,_start -o "$out/init" "${init_sources[@]}"
  # fptest: stock glibc userland (Debian's cross glibc, libc6-dev-riscv64-cross), RV64GC lp64d.
  [ -f /usr/riscv64-linux-gnu/lib/libc.a ] ||
    die "/usr/riscv64-linux-gnu/lib/libc.a missing: run deploy/install-deps.sh (libc6-dev-riscv64-cross)"
  "${cross}gcc" -march=rv64gc -mabi=lp64d -static -O2 -Wall -Wextra -Werror -pthread \
      -s -Wl,--build-id=none -o "$out/fptest" "$here/fptest/fptest.c" -lm
  cc -O2 -o "$out/gen_init_cpio" "$src/usr/gen_init_cpio.c"
  touch -d @0 "$out/init" "$out/fptest"  # gen_init_cpio stores a file's own mtime; -t 0 covers the rest
  INIT="$out/init" FPTEST="$out/fptest" "$out/gen_init_cpio" -t 0 "$here/initramfs.list" > "$out/initramfs.cpio.tmp"
  mv "$out/initramfs.cpio.tmp" "$out/initramfs.cpio"
  echo "$initramfs_key" > "$out/.initramfs.stamp"
fi
echo "linux-guest: $out/Image $(stat -c %s "$out/Image") bytes, initramfs.cpio $(stat -c %s "$out/initramfs.cpio") bytes"
