#pragma once
// Guest image loader: an ELF64 RISC-V executable (PT_LOAD segments into RAM, bss zeroed)
// or, for anything not starting with the ELF magic, a raw binary at the DRAM base.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "vmm/guest_memory.h"

namespace tandem::vmm {

// A guest image that cannot be loaded; what() is one line naming the file and the reason.
class LoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct LoadedImage {
  uint64_t entry = 0;
  uint64_t lowest = 0;   // lowest guest address written
  uint64_t highest = 0;  // one past the highest guest address written
  bool elf = false;
};

// Loads `path` into `mem`. Throws LoadError.
LoadedImage load_image(const std::string& path, GuestMemory& mem);

// The same, but a raw binary goes to `raw_base`. A raw Linux `Image` (RISC-V boot header)
// reserves its header's image_size (text + data + bss), not just the file's bytes, so
// `highest` covers what the kernel will use. An ELF whose segments all lie in RAM loads at
// its physical addresses; one linked outside RAM (a relocatable kernel such as Linux's
// vmlinux, physical addresses from 0) is moved so that its lowest segment starts at
// `raw_base`, the layout of the same kernel's raw Image. Throws LoadError.
LoadedImage load_image_at(const std::string& path, GuestMemory& mem, uint64_t raw_base);

// A whole file as bytes (an initrd, which is never parsed). Throws LoadError for a
// missing, unreadable, non-regular or empty file.
std::vector<uint8_t> read_guest_file(const std::string& path);

}  // namespace tandem::vmm
