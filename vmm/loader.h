#pragma once
// Guest image loader: an ELF64 RISC-V executable (PT_LOAD segments into RAM, bss zeroed)
// or, for anything not starting with the ELF magic, a raw binary at the DRAM base.
#include <cstdint>
#include <stdexcept>
#include <string>

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

}  // namespace tandem::vmm
