#pragma once
// Guest time is derived, never read: mtime = icount / kInstructionsPerTick + offset.
// One tick per 100 instructions is 10 MHz at a virtual 1 GIPS, the same as
// `qemu-system-riscv64 -icount shift=0`. The offset only moves through logged events
// (WFI idle skips, time adjustments), so a replay computes the same mtime.
#include <cstdint>

namespace tandem::vmm {

inline constexpr uint64_t kInstructionsPerTick = 100;
inline constexpr uint64_t kTimebaseHz = 10'000'000;

class VirtualClock {
 public:
  uint64_t mtime(uint64_t icount) const { return icount / kInstructionsPerTick + offset_ticks_; }
  // First icount at or after `now_icount` at which mtime >= deadline (now_icount if already).
  uint64_t icount_at(uint64_t deadline, uint64_t now_icount) const {
    if (mtime(now_icount) >= deadline) return now_icount;
    const uint64_t ticks = deadline - offset_ticks_;  // > now_icount / 100 here
    return ticks * kInstructionsPerTick;
  }
  uint64_t offset_ticks() const { return offset_ticks_; }
  void set_offset_ticks(uint64_t ticks) { offset_ticks_ = ticks; }
  void advance(uint64_t ticks) { offset_ticks_ += ticks; }

 private:
  uint64_t offset_ticks_ = 0;
};

}  // namespace tandem::vmm
