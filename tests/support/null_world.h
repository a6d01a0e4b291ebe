#pragma once
// A World with nothing behind it, for tests that need a Machine but no host: a service
// point every 4096 instructions, never idle, output dropped, entropy all zeros.
#include <algorithm>
#include <cstdint>
#include <span>

#include "vmm/machine.h"

namespace tandem::test {

class NullWorld final : public vmm::World {
 public:
  uint64_t next_service_icount(uint64_t now) override { return now + 4096; }
  void service(vmm::Machine&) override {}
  bool idle(vmm::Machine&, uint64_t) override { return false; }
  void output(vmm::OutputChannel, uint64_t, std::span<const uint8_t>) override {}
  void entropy(uint64_t, std::span<uint8_t> out) override { std::fill(out.begin(), out.end(), 0); }
};

}  // namespace tandem::test
