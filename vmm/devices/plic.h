#pragma once
// SiFive PLIC (QEMU virt layout): priorities at 0x0, pending bits at 0x1000, enable bits
// at 0x2000 + 0x80*ctx, threshold at 0x200000 + 0x1000*ctx and claim/complete at +4.
// Sources are level-triggered through a gateway: a source is pending while its line is
// high and it is not claimed; completing a claimed source that is still high re-pends it.
// Each context drives one hart interrupt line (ctx 0 → MEIP, ctx 1 → SEIP on virt).
#include <array>
#include <cstdint>
#include <type_traits>

#include "vmm/board.h"
#include "vmm/device.h"

namespace tandem::vmm {

class Plic final : public Device, public IrqSink {
 public:
  static constexpr unsigned kSources = kPlicSources;  // source 0 is reserved ("no interrupt")
  static constexpr unsigned kContexts = kPlicContexts;
  static constexpr unsigned kWords = (kSources + 31) / 32;
  static constexpr uint32_t kMaxPriority = 7;
  static constexpr uint64_t kPriorityBase = 0x0, kPendingBase = 0x1000, kEnableBase = 0x2000,
                            kEnableStride = 0x80, kContextBase = 0x200000,
                            kContextStride = 0x1000;

  explicit Plic(std::array<IrqLine, kContexts> context_outputs) : outputs_(context_outputs) {}

  std::string_view name() const override { return "plic"; }
  bool read(uint64_t offset, unsigned size, uint64_t& value) override;
  bool write(uint64_t offset, unsigned size, uint64_t value) override;
  void save(StateWriter& out) const override;
  void restore(StateReader& in) override;

  // A device's interrupt line (IrqSink): source `line` in 1..kSources-1 goes to `level`.
  void set_irq(unsigned line, bool level) override;
  // Re-drives the context outputs from the state (after restore).
  void refresh_outputs() { update_outputs(); }

 private:
  struct State {
    uint32_t priority[kSources] = {};
    uint32_t level[kWords] = {};    // current input line levels
    uint32_t pending[kWords] = {};  // gateway-latched pending bits
    uint32_t claimed[kWords] = {};  // claimed, awaiting completion
    uint32_t enable[kContexts][kWords] = {};
    uint32_t threshold[kContexts] = {};
  };
  static_assert(std::has_unique_object_representations_v<State>);

  static bool bit(const uint32_t* words, unsigned i) { return (words[i / 32] >> (i % 32)) & 1; }
  static void set_bit(uint32_t* words, unsigned i, bool v) {
    if (v) {
      words[i / 32] |= 1u << (i % 32);
    } else {
      words[i / 32] &= ~(1u << (i % 32));
    }
  }
  // Highest-priority pending+enabled source above the context's threshold (0 if none).
  unsigned best_source(unsigned context) const;
  uint32_t claim(unsigned context);
  void complete(unsigned context, uint32_t source);
  void update_outputs();

  std::array<IrqLine, kContexts> outputs_;
  State state_;
};

}  // namespace tandem::vmm
