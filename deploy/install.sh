#!/usr/bin/env bash
# deploy/install.sh: install Tandem on a host (binaries, example configs, systemd units, the
# OCF resource agent) from a build directory, then prepare the system (a `tandem` system
# user, /etc/tandem, /var/lib/tandem) when that makes sense.
#
#   deploy/install.sh [--build-dir DIR] [--prefix DIR] [--no-system] [--build]
#   DESTDIR=/tmp/stage deploy/install.sh --prefix /usr      # staged (packaging): files only
#
# The file list is CMake's install rules (tools/CMakeLists.txt, deploy/CMakeLists.txt), so
# `make install` and this script install the same tree. System preparation (user, state
# dirs) is skipped when DESTDIR is set, when not running as root, or with --no-system: a
# staged or unprivileged install must never touch the running system.
# Exit status: 0 installed, 2 usage error, 1 anything else failed.
set -euo pipefail

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  echo
  echo "Options:"
  echo "  --build-dir DIR  the CMake build directory (default: build, next to deploy/)"
  echo "  --prefix DIR     installation prefix (default: /usr/local)"
  echo "  --build          build the installed targets first (cmake --build DIR -j2)"
  echo "  --no-system      files only: no user, no /etc/tandem, no /var/lib/tandem"
  echo "  -h, --help       this text"
}

repo=$(cd "$(dirname "$0")/.." && pwd)
build_dir="$repo/build"
prefix=/usr/local
do_build=0
system=1
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) [ $# -ge 2 ] || { echo "install.sh: --build-dir needs a value" >&2; exit 2; }; build_dir=$2; shift 2 ;;
    --build-dir=*) build_dir=${1#*=}; shift ;;
    --prefix) [ $# -ge 2 ] || { echo "install.sh: --prefix needs a value" >&2; exit 2; }; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --build) do_build=1; shift ;;
    --no-system) system=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be absolute, got '$prefix'" >&2; exit 2 ;; esac
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  echo "install.sh: '$build_dir' is not a configured build directory (run 'make build' or pass --build-dir)" >&2
  exit 2
fi

tools=(tandem tandemd tandemctl tandem-witness tandem-netsim)
if [ "$do_build" = 1 ]; then
  cmake --build "$build_dir" -j 2 --target "${tools[@]}"
fi
for t in "${tools[@]}"; do
  if [ ! -x "$build_dir/tools/$t" ]; then
    echo "install.sh: $build_dir/tools/$t is not built (run with --build, or 'make build')" >&2
    exit 1
  fi
done

# DESTDIR comes from the environment; cmake --install honours it.
cmake --install "$build_dir" --prefix "$prefix"

if [ -n "${DESTDIR:-}" ]; then
  echo "install.sh: staged into DESTDIR=$DESTDIR: no user or state directories created"
  exit 0
fi
if [ "$system" = 0 ]; then
  echo "install.sh: --no-system: no user or state directories created"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: not root: no user or state directories created"
  exit 0
fi

# The daemons run as `tandem` (tandemd@.service); the witness uses a DynamicUser of its own.
if ! getent passwd tandem >/dev/null; then
  useradd --system --home-dir /var/lib/tandem --no-create-home --shell /usr/sbin/nologin \
    --comment "Tandem VM pair daemon" tandem
  echo "install.sh: created system user tandem"
fi
# /etc/tandem holds configs and the PSK (0600, owned by tandem: tandemd refuses a key
# others can read); /var/lib/tandem the guests, disks and epoch files.
install -d -m 0750 -o root -g tandem /etc/tandem
install -d -m 0750 -o tandem -g tandem /var/lib/tandem
echo "install.sh: installed under $prefix; next: tandemctl keygen --out /etc/tandem/pair.psk,"
echo "  configs from $prefix/share/tandem/examples into /etc/tandem (docs/deploy.md: Walk-through)"
