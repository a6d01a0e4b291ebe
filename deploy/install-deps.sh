#!/usr/bin/env bash
# Installs everything Tandem needs to build, test and benchmark on Debian 12.
# Idempotent: when every package is already installed it does nothing (no apt-get update).
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config ccache
  # libraries
  libboost-dev libboost-system-dev libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev
  libprotobuf-dev protobuf-compiler nlohmann-json3-dev libfdt-dev libxxhash-dev libzstd-dev liblz4-dev libssl-dev
  # the guest NIC's user-mode (NAT) backend
  libslirp-dev
  # the CPU translator (vmm/cpu/jit*): Xbyak, a header-only x86-64 assembler
  libxbyak-dev
  # tests and benchmarks
  googletest libgtest-dev libgmock-dev libbenchmark-dev python3
  # fuzzing (fuzz/, `make fuzz`): clang with libFuzzer and the sanitizer runtimes
  clang-16 libclang-rt-16-dev
  # the etcd arbiter's tests run a real etcd (3.4 serves the v3 JSON gateway)
  etcd-server etcd-client
  # deploy: the namespace lab's hard partitions, unit verification (systemd-analyze, strace), ocf-tester
  nftables iproute2 systemd resource-agents strace
  # guests and the reference machine
  gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf binutils-riscv64-unknown-elf qemu-system-misc
  # the Linux guest (guest/linux): kernel source, Linux cross compiler, firmware, kernel build tools
  linux-source-6.1 gcc-riscv64-linux-gnu binutils-riscv64-linux-gnu opensbi bc flex bison libelf-dev cpio xz-utils
  # the Debian guest (guest/debian): apt fetches and verifies the riscv64 .debs against the
  # archive keyring; fakeroot + dpkg-deb unpack them, e2fsprogs writes the ext4 image
  apt debian-archive-keyring gpgv fakeroot dpkg e2fsprogs
  # static glibc programs for the Linux guest (guest/linux/fptest): Debian's riscv64 cross glibc
  libc6-dev-riscv64-cross
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
