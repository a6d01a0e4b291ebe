# Sourced by build.sh and lock.sh: a private apt for Debian trixie riscv64. Everything apt
# reads or writes lives under $cache (its own sources list, state, lists, archives, an empty
# dpkg status and an empty apt.conf.d), so the host's apt configuration is neither read nor
# changed, and the downloads survive `make clean` and are shared by every build directory on
# the machine. apt checks the InRelease signature against Debian's archive keyring and the
# index and .deb hashes against the signed index.
#
# Sets: cache, keyring, apt_run (a function: apt_run apt-get ARGS...).

cache="${TANDEM_DEBIAN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/debian-apt}"
mirror="${TANDEM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=trixie
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

apt_setup() {
  [ -r "$keyring" ] || { echo "debian-guest: $keyring missing: run deploy/install-deps.sh (debian-archive-keyring)" >&2; return 2; }
  mkdir -p "$cache"/{state/lists/partial,cache,archives/partial,etc/apt.conf.d,etc/preferences.d,etc/sources.list.d,etc/trusted.gpg.d,log}
  : > "$cache/state/status.tmp" && mv "$cache/state/status.tmp" "$cache/state/status"
  echo "deb [arch=riscv64 signed-by=$keyring] $mirror $suite main" > "$cache/etc/sources.list"
  local sandbox=""
  # apt run as root hands downloads to the _apt user, which cannot write a private cache
  # under root's home; as any other user it downloads as that user.
  [ "$(id -u)" -ne 0 ] || sandbox='APT::Sandbox::User "root";'
  cat > "$cache/etc/apt.conf" <<CONF
Dir::Etc::main "/dev/null";
Dir::Etc::parts "$cache/etc/apt.conf.d";
Dir::Etc::sourcelist "$cache/etc/sources.list";
Dir::Etc::sourceparts "$cache/etc/sources.list.d";
Dir::Etc::preferences "$cache/etc/preferences";
Dir::Etc::preferencesparts "$cache/etc/preferences.d";
Dir::Etc::trusted "$cache/etc/trusted.gpg";
Dir::Etc::trustedparts "$cache/etc/trusted.gpg.d";
Dir::State "$cache/state";
Dir::State::lists "$cache/state/lists";
Dir::State::status "$cache/state/status";
Dir::Cache "$cache/cache";
Dir::Cache::archives "$cache/archives";
Dir::Log "$cache/log";
APT::Architecture "riscv64";
APT::Architectures { "riscv64"; };
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Acquire::Retries "3";
Debug::NoLocking "true";
$sandbox
CONF
}

apt_run() { APT_CONFIG="$cache/etc/apt.conf" "$@"; }
