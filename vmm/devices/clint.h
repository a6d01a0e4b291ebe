#pragma once
// SiFive CLINT for one hart: msip (0x0), mtimecmp (0x4000), mtime (0xbff8).
// mtime is derived from the icount through the VirtualClock; writes to mtime are ignored
// (guest time only moves with icount and logged World adjustments). MTIP is a level:
// mtime >= mtimecmp. The machine asks timer_deadline_icount() where to stop next so MTIP
// rises at an exact icount, and calls update_timer() after every run slice.
#include <cstdint>
#include <functional>
#include <type_traits>

#include "vmm/clock.h"
#include "vmm/device.h"

namespace tandem::vmm {

class Clint final : public Device {
 public:
  static constexpr uint64_t kMsip = 0x0, kMtimecmp = 0x4000, kMtime = 0xbff8;

  // `now_icount` reads the current icount (mid-instruction for MMIO); `deadline_changed`
  // is called when the guest moves mtimecmp, so the run loop can recompute its stop.
  Clint(const VirtualClock& clock, std::function<uint64_t()> now_icount, IrqLine msip,
        IrqLine mtip, std::function<void()> deadline_changed = {})
      : clock_(clock),
        now_icount_(std::move(now_icount)),
        msip_line_(msip),
        mtip_line_(mtip),
        deadline_changed_(std::move(deadline_changed)) {}

  std::string_view name() const override { return "clint"; }
  bool read(uint64_t offset, unsigned size, uint64_t& value) override;
  bool write(uint64_t offset, unsigned size, uint64_t value) override;
  void save(StateWriter& out) const override;
  void restore(StateReader& in) override;

  uint64_t mtimecmp() const { return state_.mtimecmp; }
  // The icount at which MTIP will rise, or UINT64_MAX if it is already up or never will.
  uint64_t timer_deadline_icount(uint64_t now_icount) const;
  // Re-evaluates MTIP at `now_icount` and re-drives both lines.
  void update_timer(uint64_t now_icount);

 private:
  struct State {
    uint64_t mtimecmp = UINT64_MAX;  // reset value: no timer
    uint32_t msip = 0;
    uint32_t reserved = 0;
  };
  static_assert(std::has_unique_object_representations_v<State>);

  const VirtualClock& clock_;
  std::function<uint64_t()> now_icount_;
  IrqLine msip_line_;
  IrqLine mtip_line_;
  std::function<void()> deadline_changed_;
  State state_;
};

}  // namespace tandem::vmm
