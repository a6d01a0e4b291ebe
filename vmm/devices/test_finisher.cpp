#include "vmm/devices/test_finisher.h"

namespace tandem::vmm {

bool TestFinisher::read(uint64_t /*offset*/, unsigned /*size*/, uint64_t& value) {
  value = 0;
  return true;
}

bool TestFinisher::write(uint64_t offset, unsigned size, uint64_t value) {
  // The command is the low half-word: OpenSBI writes it with a 16-bit store (writew), so
  // 2- and 4-byte writes count, as on QEMU (the code needs a 4-byte write).
  if (offset != 0 || size < 2) return true;
  const uint32_t v = static_cast<uint32_t>(value);
  switch (v & 0xffff) {
    case kPass:
      state_.result = static_cast<uint32_t>(FinisherResult::Pass);
      break;
    case kFail:
      state_.result = static_cast<uint32_t>(FinisherResult::Fail);
      state_.code = v >> 16;
      break;
    case kReset:
      state_.result = static_cast<uint32_t>(FinisherResult::Reset);
      break;
    default:
      return true;  // unknown commands are ignored, as on QEMU
  }
  bus_.request_stop();
  return true;
}

void TestFinisher::save(StateWriter& out) const {
  out.tag("TEST");
  out.pod(state_);
}

void TestFinisher::restore(StateReader& in) {
  in.expect_tag("TEST");
  State s;
  in.pod(s);
  if (s.result > static_cast<uint32_t>(FinisherResult::Reset)) {
    throw StateError("snapshot: test finisher state out of range");
  }
  state_ = s;
}

}  // namespace tandem::vmm
