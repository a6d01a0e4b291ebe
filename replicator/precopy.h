#pragma once
// Chunked pre-copy (the initial sync of a secondary): the sizes both sides agree on, and
// the secondary's check of each SyncChunk's place in the sync before it is applied.
#include <cstddef>
#include <cstdint>
#include <string>

#include "proto/replication.pb.h"

namespace tandem::replicator {

// A part (one SyncChunk) holds about this much checkpoint stream: well under the link's
// frame limit whatever the guest's size, and small enough to apply as it comes.
inline constexpr size_t kSyncPartBytes = size_t{4} << 20;
// The primary sends at most this many parts ahead of the secondary's SyncAck: the
// secondary queues no more than that, and a slow secondary slows the copy, not memory.
inline constexpr uint64_t kSyncWindowParts = 4;

// Order of the sync messages on the secondary. Messages are numbered from 0 with no gaps;
// message 0 opens round 0; a round goes up by one at a time, its parts numbered from 0;
// the closing message (last) continues the last round; nothing follows it.
class SyncSequence {
 public:
  // "" when `chunk` is the next message; otherwise why it is refused (the sync is then
  // unusable: the caller refuses it and drops what it applied).
  std::string accept(const wire::SyncChunk& chunk);
  uint64_t next_sequence() const { return next_sequence_; }
  bool complete() const { return closed_; }

 private:
  uint64_t next_sequence_ = 0;
  uint32_t round_ = 0;
  uint32_t next_part_ = 0;
  bool closed_ = false;
};

}  // namespace tandem::replicator
