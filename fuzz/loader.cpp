// Guest image loaders (vmm/loader.cpp): ELF64 executables (placed at their addresses or
// moved to the raw base when linked outside RAM) and raw images (a Linux Image's header
// sizes its footprint), into kMemBytes of RAM at the DRAM base, as `tandem run GUEST` and
// `--bios/--kernel` load them.
#include <string>

#include "fuzz/fuzz_support.h"
#include "vmm/board.h"
#include "vmm/loader.h"

namespace {
constexpr uint64_t kMemBytes = uint64_t{8} << 20;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static tandem::fuzz::MemFile file("fuzz-image");
  static tandem::vmm::GuestMemory mem(tandem::vmm::kDramBase, kMemBytes);
  file.set(data, size);
  for (const uint64_t base : {tandem::vmm::kDramBase, tandem::vmm::kDramBase + (kMemBytes >> 1)}) {
    try {
      const auto image = tandem::vmm::load_image_at(file.path(), mem, base);
      if (image.lowest > image.highest) __builtin_trap();
    } catch (const tandem::vmm::LoadError&) {  // the documented refusal
    }
  }
  return 0;
}
