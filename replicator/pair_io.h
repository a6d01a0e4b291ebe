#pragma once
// The pieces of the live pair that sit between the machine's World and the link (the
// output rule itself is replicator/output_gate.h):
//  - OutputTail: on the secondary, the replayed (swallowed) output of every channel, kept
//    from the last release marker on, so a promoted secondary can re-emit what it cannot
//    confirm as released (at-least-once).
//  - StreamBatchSource / LinkBatchSink: LogBatch messages over the replication link.
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "replicator/transport/link.h"
#include "vmm-hooks/batch_stream.h"
#include "vmm-hooks/output.h"

namespace tandem::replicator {

class OutputTail final : public hooks::OutputSink {
 public:
  using Channel = vmm::OutputChannel;
  // Bytes produced so far by the replay on `channel`.
  uint64_t produced(Channel channel = Channel::Console) const { return of(channel).produced; }
  // Drops what is known to be released (the primary's OUTPUT_RELEASED marker of `channel`).
  void trim_released(Channel channel, uint64_t released);
  void trim_released(uint64_t released) { trim_released(Channel::Console, released); }
  // What was produced after `released`: what a promoted secondary re-emits. Console bytes
  // come as one piece; network frames one piece per frame (a frame released in part, which
  // cannot happen, would be re-sent whole).
  std::vector<std::string> unconfirmed(Channel channel, uint64_t released) const;
  std::string unconfirmed(uint64_t released) const;  // the console's

  void output(vmm::OutputChannel channel, uint64_t icount, std::span<const uint8_t> bytes) override;

 private:
  struct Tail {
    uint64_t produced = 0;
    uint64_t base = 0;                // byte index of pieces.front()
    std::deque<std::string> pieces;   // console: lines (or parts); net: frames
    size_t bytes = 0;                 // in pieces
  };
  const Tail& of(Channel c) const { return tails_[static_cast<size_t>(c)]; }
  Tail& of(Channel c) { return tails_[static_cast<size_t>(c)]; }
  std::array<Tail, vmm::kOutputChannels> tails_;
};

// Batches arriving on the link (I/O thread) for the secondary's Replayer (VM thread).
class StreamBatchSource final : public hooks::BatchSource {
 public:
  // Queues the next batch of the log and wakes the consumer (or leaves that to
  // wake_consumer()). Batches count from 0 (Recorder::begin) and each must follow the last:
  // a missing one would silently drop its records and the replay would go wrong later, far
  // from the cause. A batch out of sequence is refused (false) and breaks the stream for
  // good; gap() then says which batch was missing.
  bool push(log::LogBatch batch, bool wake = true);
  void wake_consumer() { cv_.notify_all(); }
  void close();  // no more batches: the replay runs out what it has
  std::optional<log::LogBatch> next_batch() override;
  bool finished() const override;
  bool wait_for_more(std::chrono::milliseconds timeout) override;
  uint64_t complete_to() const;
  uint64_t last_sequence() const;
  size_t queued() const;
  // Empty, or what broke the stream ("log batch 3 missing: batch 4 arrived").
  std::string gap() const;

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<log::LogBatch> queue_;
  bool closed_ = false;
  uint64_t complete_to_ = 0;
  uint64_t last_sequence_ = 0;
  uint64_t next_sequence_ = 0;
  std::string gap_;
};

class LinkBatchSink final : public hooks::BatchSink {
 public:
  // `on_sent(sequence)` runs for every batch handed to the link (the primary notes when it
  // sent what the secondary will acknowledge: fencing::AckFreshness).
  explicit LinkBatchSink(std::shared_ptr<Link> link, std::function<void(uint64_t)> on_sent = {})
      : link_(std::move(link)), on_sent_(std::move(on_sent)) {}
  void write_batch(const log::LogBatch& batch) override;
  uint64_t bytes() const { return bytes_; }
  uint64_t complete_to() const { return complete_to_; }

 private:
  std::shared_ptr<Link> link_;
  std::function<void(uint64_t)> on_sent_;
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> complete_to_{0};
};

}  // namespace tandem::replicator
