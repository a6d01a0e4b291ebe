#pragma once
// Chunked pre-copy (the initial sync of a secondary): the sizes both sides agree on, the
// secondary's check of each SyncChunk's place in the sync before it is applied, and the
// primary's encoder thread.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "checkpoint/checkpoint.h"
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
  // Succeeds when `chunk` is the next message; otherwise says why it is refused (Invalid;
  // the sync is then unusable: the caller refuses it and drops what it applied).
  Result<void> accept(const wire::SyncChunk& chunk);
  uint64_t next_sequence() const { return next_sequence_; }
  bool complete() const { return closed_; }

 private:
  uint64_t next_sequence_ = 0;
  uint32_t round_ = 0;
  uint32_t next_part_ = 0;
  bool closed_ = false;
};

// The primary copies a round's pages in batches this big (checkpoint::RoundCopier) and
// keeps at most this many copied but not yet encoded: the copy is the VM thread's only
// work per part, and the copies stay bounded whatever the guest's size.
inline constexpr size_t kSyncCopyBatchBytes = size_t{1} << 20;
inline constexpr size_t kSyncCopyBatches = 4;

// The encoding half of the primary's pre-copy, on its own thread, so the VM thread (the
// machine's only owner) runs the guest during the copy rounds: the VM thread copies the
// next pages into a free batch between guest slices and submits it; this thread encodes the
// batches, in order, into parts (checkpoint::PartEncoder: compression, hashes) and hands
// each to `send`, which may block for flow control and throws to abort the sync.
class PartPipeline {
 public:
  using Send = std::function<void(std::string&& part)>;
  PartPipeline(size_t part_bytes, size_t batches, size_t batch_bytes, Send send);
  // Stops the thread once it returns from what it does (a send waiting for the peer must
  // return by itself: see stopping()).
  ~PartPipeline();
  PartPipeline(const PartPipeline&) = delete;
  PartPipeline& operator=(const PartPipeline&) = delete;

  // VM thread. A batch to fill, or nullptr while every batch is queued or being encoded.
  checkpoint::RecordBatch* free_batch();
  // Queues a batch from free_batch() (batches of one round, in the copier's order).
  void submit(checkpoint::RecordBatch* batch);
  // After the round's last batch: the encoder ends the round with its last part.
  void end_round();
  // True once the round's last part went to `send`, with the round's figures in `stats`.
  // Rethrows what `send` or the encoder threw (the pipeline then drops what it holds).
  bool round_done(checkpoint::Stats& stats);
  // Waits until a batch comes free, the round is done, or `timeout` passes.
  void wait(std::chrono::milliseconds timeout);
  // True once the destructor runs: a `send` that waits should give up.
  bool stopping() const;

 private:
  void run();

  const size_t part_bytes_;
  const Send send_;
  std::vector<std::unique_ptr<checkpoint::RecordBatch>> pool_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<checkpoint::RecordBatch*> free_;
  std::deque<checkpoint::RecordBatch*> queue_;  // nullptr: the end of the round
  bool round_done_ = false;
  checkpoint::Stats stats_;
  std::exception_ptr error_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace tandem::replicator
