#include "vmm/devices/plic.h"

namespace tandem::vmm {

void Plic::set_irq(unsigned line, bool level) {
  if (line == 0 || line >= kSources) return;  // wiring error: ignore rather than corrupt state
  const bool was_pending = bit(state_.pending, line);
  set_bit(state_.level, line, level);
  // Gateway: a rising (or still high) line pends the source unless it is being serviced.
  // Level-triggered: a line that drops before the claim withdraws its request.
  if (!bit(state_.claimed, line)) set_bit(state_.pending, line, level);
  // Devices re-drive their line on every register access (the UART per byte): only a
  // change of the pending bits can change what the contexts see.
  if (bit(state_.pending, line) != was_pending) update_outputs();
}

unsigned Plic::best_source(unsigned context) const {
  unsigned best = 0;
  uint32_t best_priority = state_.threshold[context];
  // Word by word over pending & enabled: usually one or two bits are set in all 97.
  for (unsigned w = 0; w < kWords; ++w) {
    for (uint32_t candidates = state_.pending[w] & state_.enable[context][w]; candidates != 0;
         candidates &= candidates - 1) {
      const unsigned s = w * 32 + static_cast<unsigned>(__builtin_ctz(candidates));
      // Strictly greater: ties go to the lowest source id, and priority 0 never interrupts.
      if (s != 0 && s < kSources && state_.priority[s] > best_priority) {
        best = s;
        best_priority = state_.priority[s];
      }
    }
  }
  return best;
}

uint32_t Plic::claim(unsigned context) {
  const unsigned s = best_source(context);
  if (s != 0) {
    set_bit(state_.pending, s, false);
    set_bit(state_.claimed, s, true);
  }
  update_outputs();
  return s;
}

void Plic::complete(unsigned context, uint32_t source) {
  // The spec ignores completions for sources not enabled for this context.
  if (source == 0 || source >= kSources || !bit(state_.enable[context], source)) return;
  if (!bit(state_.claimed, source)) return;
  set_bit(state_.claimed, source, false);
  if (bit(state_.level, source)) set_bit(state_.pending, source, true);
  update_outputs();
}

void Plic::update_outputs() {
  for (unsigned c = 0; c < kContexts; ++c) outputs_[c].set(best_source(c) != 0);
}

bool Plic::read(uint64_t offset, unsigned size, uint64_t& value) {
  if (size != 4 || offset % 4 != 0) return false;  // the PLIC is a 32-bit device
  value = 0;
  if (offset < kPendingBase) {
    const uint64_t s = offset / 4;
    if (s < kSources) value = state_.priority[s];
  } else if (offset < kEnableBase) {
    const uint64_t w = (offset - kPendingBase) / 4;
    if (w < kWords) value = state_.pending[w];
  } else if (offset < kContextBase) {
    const uint64_t c = (offset - kEnableBase) / kEnableStride;
    const uint64_t w = (offset - kEnableBase) % kEnableStride / 4;
    if (c < kContexts && w < kWords) value = state_.enable[c][w];
  } else {
    const uint64_t c = (offset - kContextBase) / kContextStride;
    const uint64_t reg = (offset - kContextBase) % kContextStride;
    if (c < kContexts) {
      if (reg == 0) value = state_.threshold[c];
      if (reg == 4) value = claim(static_cast<unsigned>(c));
    }
  }
  return true;
}

bool Plic::write(uint64_t offset, unsigned size, uint64_t value) {
  if (size != 4 || offset % 4 != 0) return false;
  const uint32_t v = static_cast<uint32_t>(value);
  if (offset < kPendingBase) {
    const uint64_t s = offset / 4;
    if (s >= 1 && s < kSources) state_.priority[s] = v & kMaxPriority;
  } else if (offset < kEnableBase) {
    // Pending bits are read-only.
    return true;
  } else if (offset < kContextBase) {
    const uint64_t c = (offset - kEnableBase) / kEnableStride;
    const uint64_t w = (offset - kEnableBase) % kEnableStride / 4;
    if (c < kContexts && w < kWords) state_.enable[c][w] = w == 0 ? v & ~1u : v;  // source 0 is not a source
  } else {
    const uint64_t c = (offset - kContextBase) / kContextStride;
    const uint64_t reg = (offset - kContextBase) % kContextStride;
    if (c < kContexts) {
      if (reg == 0) state_.threshold[c] = v & kMaxPriority;
      if (reg == 4) complete(static_cast<unsigned>(c), v);
    }
  }
  update_outputs();
  return true;
}

void Plic::save(StateWriter& out) const {
  out.tag("PLIC");
  out.pod(state_);
}

void Plic::restore(StateReader& in) {
  in.expect_tag("PLIC");
  State s;
  in.pod(s);
  for (unsigned i = 0; i < kSources; ++i) {
    if (s.priority[i] > kMaxPriority) throw StateError("snapshot: PLIC priority out of range");
  }
  state_ = s;
  update_outputs();
}

}  // namespace tandem::vmm
