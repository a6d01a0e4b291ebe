#pragma once
// The Linux kv guest's boot images (OpenSBI fw_jump + kernel + initramfs) for tests that boot
// it when it is there: this build's guest/linux (TANDEM_LINUX_GUEST_DIR, built by `make test`),
// or TANDEM_LINUX_IMAGES=another-build/guest/linux; TANDEM_OPENSBI overrides the firmware.
#include <cstdlib>
#include <filesystem>
#include <string>

#include "vmm/machine.h"

namespace tandem::test {

struct LinuxImages {
  vmm::BootImages boot;
  std::string missing;  // non-empty: why the images are not there (the test skips)
};

inline LinuxImages linux_guest_images() {
  LinuxImages r;
  std::string images;
#ifdef TANDEM_LINUX_GUEST_DIR
  images = TANDEM_LINUX_GUEST_DIR;
#endif
  if (const char* env = std::getenv("TANDEM_LINUX_IMAGES")) images = env;
  if (images.empty()) {
    r.missing = "no Linux guest in this build and TANDEM_LINUX_IMAGES is not set";
    return r;
  }
  r.boot.bios = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
  if (const char* sbi = std::getenv("TANDEM_OPENSBI")) r.boot.bios = sbi;
  r.boot.kernel = images + "/Image";
  r.boot.initrd = images + "/initramfs.cpio";
  for (const auto& p : {r.boot.bios, r.boot.kernel, r.boot.initrd}) {
    if (!std::filesystem::exists(p)) r.missing = p + " is missing";
  }
  return r;
}

}  // namespace tandem::test
