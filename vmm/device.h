#pragma once
// The one small interface every memory-mapped device implements (cf. Spike's
// abstract_device_t, Firecracker's BusDevice): accesses arrive with offsets relative to
// the device's own base. A false return is an access fault for the CPU, never an abort.
#include <cstdint>
#include <string_view>

#include "vmm/state_io.h"

namespace tandem::vmm {

class Device {
 public:
  virtual ~Device() = default;
  virtual std::string_view name() const = 0;
  // size is 1, 2, 4 or 8. The value is little-endian, zero-extended to 64 bits.
  virtual bool read(uint64_t offset, unsigned size, uint64_t& value) = 0;
  virtual bool write(uint64_t offset, unsigned size, uint64_t value) = 0;
  // Snapshot state lives beside the device.
  virtual void save(StateWriter& out) const = 0;
  virtual void restore(StateReader& in) = 0;
};

// An interrupt input (a PLIC source, or a hart's mip bit), wired by the board.
class IrqSink {
 public:
  virtual ~IrqSink() = default;
  virtual void set_irq(unsigned line, bool level) = 0;
};

// A device's handle on one interrupt line.
struct IrqLine {
  IrqSink* sink = nullptr;
  unsigned line = 0;
  void set(bool level) const {
    if (sink) sink->set_irq(line, level);
  }
};

}  // namespace tandem::vmm
