#pragma once
// The machine the checkpoint and pre-copy targets apply streams to, and make_seeds writes
// their seeds from: kMemBytes of RAM and a kDiskBytes disk (an in-memory file), small so
// that applying a full stream (which rewrites all of RAM and disk) stays cheap.
#include <memory>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "tests/checkpoint/test_guests.h"
#include "vmm/machine.h"

namespace tandem::fuzz {

inline constexpr uint64_t kMemBytes = uint64_t{2} << 20;
inline constexpr uint64_t kDiskBytes = uint64_t{64} << 10;

class SeedMachine {
 public:
  // `disk_fill`: the disk's initial bytes (repeated); empty: zeros.
  explicit SeedMachine(const std::vector<uint8_t>& disk_fill = {}) : disk_("fuzz-disk") {
    std::vector<uint8_t> bytes(kDiskBytes, 0);
    for (size_t i = 0; !disk_fill.empty() && i < bytes.size(); ++i) bytes[i] = disk_fill[i % disk_fill.size()];
    disk_.set(bytes.data(), bytes.size());
    vmm::MachineConfig config;
    config.mem_bytes = kMemBytes;
    config.disk_path = disk_.path();
    machine_ = std::make_unique<vmm::Machine>(config, world_);
  }
  vmm::Machine& machine() { return *machine_; }
  checkpoint::testing::ScriptWorld& world() { return world_; }

 private:
  MemFile disk_;
  checkpoint::testing::ScriptWorld world_;
  std::unique_ptr<vmm::Machine> machine_;
};

}  // namespace tandem::fuzz
