#include "replicator/precopy.h"

#include <fmt/format.h>

namespace tandem::replicator {

std::string SyncSequence::accept(const wire::SyncChunk& chunk) {
  const std::string what = fmt::format("sync message {} (round {} part {}{})", chunk.sequence(), chunk.round(),
                                       chunk.part(), chunk.last() ? ", closing" : "");
  if (closed_) return what + " after the closing message";
  if (chunk.sequence() != next_sequence_) {
    return fmt::format("{} out of order: expected message {} ({})", what, next_sequence_,
                       chunk.sequence() > next_sequence_ ? "messages are missing" : "a repeat or an old message");
  }
  uint32_t next_part = next_part_;
  if (next_sequence_ == 0) {
    if (chunk.round() != 0 || chunk.part() != 0 || chunk.last()) return what + ": the sync must open with round 0 part 0";
  } else if (chunk.round() == round_ + 1 && !chunk.last()) {
    next_part = 0;  // a new round
  } else if (chunk.round() != round_) {
    return fmt::format("{}: round {} cannot follow round {}", what, chunk.round(), round_);
  }
  if (chunk.part() != next_part) {
    return fmt::format("{} out of order: expected part {} of round {}", what, next_part, chunk.round());
  }
  round_ = chunk.round();
  next_part_ = next_part + 1;
  ++next_sequence_;
  closed_ = chunk.last();
  return "";
}

}  // namespace tandem::replicator
