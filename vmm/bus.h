#pragma once
// The physical address space: RAM fast path first, then the registered devices.
// Registration refuses overlaps; an unmapped access returns false, which the CPU turns
// into the architected access fault.
#include <cstdint>
#include <string>
#include <vector>

#include "vmm/device.h"
#include "vmm/guest_memory.h"

namespace tandem::vmm {

class Bus {
 public:
  explicit Bus(GuestMemory& ram) : ram_(ram) {}

  // Throws std::invalid_argument if [base, base+size) overlaps RAM or another device.
  void map(uint64_t base, uint64_t size, Device& device);

  GuestMemory& ram() { return ram_; }
  const GuestMemory& ram() const { return ram_; }

  // Physical access of 1, 2, 4 or 8 bytes. False = access fault.
  bool read(uint64_t paddr, unsigned size, uint64_t& value);
  bool write(uint64_t paddr, unsigned size, uint64_t value);

  // The device covering [paddr, paddr+size), or nullptr; offset is set relative to its base.
  Device* find(uint64_t paddr, unsigned size, uint64_t& offset);

  // Set by devices (e.g. the test finisher) to ask the run loop to stop after this
  // instruction; the hart checks it after every MMIO store.
  bool stop_requested() const { return stop_requested_; }
  void request_stop() { stop_requested_ = true; }
  void clear_stop() { stop_requested_ = false; }

 private:
  struct Region {
    uint64_t base;
    uint64_t size;
    Device* device;
  };
  GuestMemory& ram_;
  std::vector<Region> regions_;  // sorted by base, never overlapping
  size_t last_hit_ = 0;          // index of the region the last find() returned
  bool stop_requested_ = false;
};

}  // namespace tandem::vmm
