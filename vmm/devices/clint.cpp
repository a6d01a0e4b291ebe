#include "vmm/devices/clint.h"

namespace tandem::vmm {

namespace {
// Reads `size` bytes at byte `shift` of a 64-bit register.
uint64_t extract(uint64_t reg, unsigned shift, unsigned size) {
  const uint64_t v = reg >> (shift * 8);
  return size >= 8 ? v : v & ((uint64_t{1} << (size * 8)) - 1);
}
uint64_t insert(uint64_t reg, unsigned shift, unsigned size, uint64_t value) {
  const uint64_t mask = (size >= 8 ? ~uint64_t{0} : (uint64_t{1} << (size * 8)) - 1) << (shift * 8);
  return (reg & ~mask) | ((value << (shift * 8)) & mask);
}
// 4- or 8-byte access inside an 8-byte register at `reg_offset`, naturally aligned.
bool in_reg64(uint64_t offset, unsigned size, uint64_t reg_offset) {
  return (size == 4 || size == 8) && offset >= reg_offset && offset + size <= reg_offset + 8 &&
         offset % size == 0;
}
}  // namespace

bool Clint::read(uint64_t offset, unsigned size, uint64_t& value) {
  if (offset == kMsip && size == 4) {
    value = state_.msip;
  } else if (in_reg64(offset, size, kMtimecmp)) {
    value = extract(state_.mtimecmp, offset - kMtimecmp, size);
  } else if (in_reg64(offset, size, kMtime)) {
    value = extract(clock_.mtime(now_icount_()), offset - kMtime, size);
  } else {
    value = 0;  // unimplemented registers (other harts) read as zero
  }
  return true;
}

bool Clint::write(uint64_t offset, unsigned size, uint64_t value) {
  if (offset == kMsip && size == 4) {
    state_.msip = value & 1;
    msip_line_.set(state_.msip);
  } else if (in_reg64(offset, size, kMtimecmp)) {
    state_.mtimecmp = insert(state_.mtimecmp, offset - kMtimecmp, size, value);
    // MTIP follows mtimecmp at once: a handler that pushes mtimecmp forward must see MTIP drop
    // before it returns.
    update_timer(now_icount_());
    if (deadline_changed_) deadline_changed_();
  }
  // Writes to mtime and to absent harts' registers are ignored.
  return true;
}

uint64_t Clint::timer_deadline_icount(uint64_t now_icount) const {
  if (state_.mtimecmp == UINT64_MAX) return UINT64_MAX;
  if (clock_.mtime(now_icount) >= state_.mtimecmp) return UINT64_MAX;
  // A deadline so far away that its icount does not fit in 64 bits never fires.
  if (state_.mtimecmp - clock_.offset_ticks() > UINT64_MAX / kInstructionsPerTick) return UINT64_MAX;
  return clock_.icount_at(state_.mtimecmp, now_icount);
}

void Clint::update_timer(uint64_t now_icount) {
  mtip_line_.set(clock_.mtime(now_icount) >= state_.mtimecmp);
  msip_line_.set(state_.msip);
}

void Clint::save(StateWriter& out) const {
  out.tag("CLNT");
  out.pod(state_);
}

void Clint::restore(StateReader& in) {
  in.expect_tag("CLNT");
  State s;
  in.pod(s);
  if (s.msip > 1) throw StateError("snapshot: CLINT msip out of range");
  state_ = s;
}

}  // namespace tandem::vmm
