#pragma once
// Small helpers shared by the device tests: in-memory snapshot streams and an interrupt
// line recorder.
#include <cstdint>
#include <cstring>
#include <map>
#include <vector>

#include "vmm/device.h"
#include "vmm/state_io.h"

namespace tandem::vmm::testing {

struct VectorSink : StateSink {
  std::vector<uint8_t> bytes;
  void write(const void* d, size_t n) override {
    bytes.insert(bytes.end(), static_cast<const uint8_t*>(d), static_cast<const uint8_t*>(d) + n);
  }
};

struct VectorSource : StateSource {
  const std::vector<uint8_t>& bytes;
  size_t pos = 0;
  explicit VectorSource(const std::vector<uint8_t>& b) : bytes(b) {}
  void read(void* d, size_t n) override {
    if (n > bytes.size() - pos) throw StateError("truncated");
    std::memcpy(d, bytes.data() + pos, n);
    pos += n;
  }
};

// Records the last level of every line it is given.
struct LevelRecorder : IrqSink {
  std::map<unsigned, bool> levels;
  void set_irq(unsigned line, bool level) override { levels[line] = level; }
  bool at(unsigned line) const {
    auto it = levels.find(line);
    return it != levels.end() && it->second;
  }
};

template <typename DeviceT>
std::vector<uint8_t> save_bytes(const DeviceT& device) {
  VectorSink sink;
  StateWriter w(sink);
  device.save(w);
  return sink.bytes;
}

template <typename DeviceT>
void restore_bytes(DeviceT& device, const std::vector<uint8_t>& bytes) {
  VectorSource src(bytes);
  StateReader r(src);
  device.restore(r);
}

}  // namespace tandem::vmm::testing
