#pragma once
// SiFive test finisher ("sifive,test0"): a 32-bit write of 0x5555 ends the run with pass,
// (code << 16) | 0x3333 with failure `code`, 0x7777 asks for a reset (Tandem ends the run,
// status 0). Any write that fires asks the bus to stop after the current instruction.
#include <cstdint>
#include <type_traits>

#include "vmm/bus.h"
#include "vmm/device.h"

namespace tandem::vmm {

enum class FinisherResult : uint32_t { None = 0, Pass = 1, Fail = 2, Reset = 3 };

class TestFinisher final : public Device {
 public:
  static constexpr uint32_t kPass = 0x5555, kFail = 0x3333, kReset = 0x7777;

  explicit TestFinisher(Bus& bus) : bus_(bus) {}

  std::string_view name() const override { return "sifive_test"; }
  bool read(uint64_t offset, unsigned size, uint64_t& value) override;
  bool write(uint64_t offset, unsigned size, uint64_t value) override;
  void save(StateWriter& out) const override;
  void restore(StateReader& in) override;

  FinisherResult result() const { return static_cast<FinisherResult>(state_.result); }
  uint32_t fail_code() const { return state_.code; }

 private:
  struct State {
    uint32_t result = 0;
    uint32_t code = 0;
  };
  static_assert(std::has_unique_object_representations_v<State>);

  Bus& bus_;
  State state_;
};

}  // namespace tandem::vmm
