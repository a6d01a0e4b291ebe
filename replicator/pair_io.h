#pragma once
// The pieces of the live pair that sit between the machine's World and the link:
//  - GatedConsole: the output rule. Guest output is held until the secondary has
//    acknowledged the log up to the icount at which it was produced.
//  - OutputTail: on the secondary, the replayed (swallowed) output, kept from the last
//    release marker on, so a promoted secondary can re-emit what it cannot confirm as
//    released (at-least-once).
//  - StreamBatchSource / LinkBatchSink: LogBatch messages over the replication link.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "replicator/transport/link.h"
#include "vmm-hooks/batch_stream.h"
#include "vmm-hooks/console_port.h"

namespace tandem::replicator {

class GatedConsole final : public hooks::ConsolePort {
 public:
  explicit GatedConsole(hooks::ConsolePort& inner) : inner_(inner) {}

  // The icount the next write_output() bytes were produced at (set by the VM thread).
  void set_output_icount(uint64_t icount) { output_icount_ = icount; }
  // Gate closed: output waits for acknowledgements. Open: output passes at once (no
  // secondary) and anything held is released.
  void set_gated(bool gated);
  // The secondary has the log up to (not including) `icount`: release what it covers.
  void acknowledge(uint64_t icount);
  // Bytes released to the console so far, and bytes held back now.
  uint64_t released_bytes() const { return released_.load(); }
  uint64_t held_bytes() const;
  // Self-fencing: output leaves only while `may_release(acknowledged)` says so (the lease
  // is valid, or the output was acknowledged by the secondary and the acks are fresh:
  // fencing::may_release_output); otherwise it is held, and released later by an
  // acknowledge() or pump() once allowed again. `acknowledged` is true when the gate is
  // closed (PROTECTED) and the secondary has acknowledged this output. Unset: always allowed.
  void set_release_check(std::function<bool(bool acknowledged)> may_release);
  // Releases what is releasable now (called regularly by the VM thread).
  void pump();
  // Resets the byte count (protection restarts counting where the secondary starts).
  void reset_count() { released_ = 0; }
  // Output-commit latency samples (µs from production to release), drained by the caller.
  std::vector<double> take_latencies();

  size_t read_input(std::vector<uint8_t>& out, size_t max) override { return inner_.read_input(out, max); }
  // The VM thread waits here while the guest idles (Recorder::idle, every <= 50 ms): output
  // held for a lapsed lease goes first if the lease was renewed meanwhile, else it would
  // wait for the guest's next instruction slice, i.e. its next input.
  bool wait_input(std::chrono::nanoseconds timeout) override;
  bool input_closed() const override { return inner_.input_closed(); }
  void write_output(std::span<const uint8_t> bytes) override;
  void flush() override { inner_.flush(); }

 private:
  struct Held {
    uint64_t icount;
    std::string bytes;
    std::chrono::steady_clock::time_point produced;
  };
  void release_locked(const std::string& bytes, std::chrono::steady_clock::time_point produced);
  void note_latency_locked(std::chrono::steady_clock::time_point produced,
                           std::chrono::steady_clock::time_point released);
  bool releasable_locked(const Held& h) const;
  void drain_locked();
  std::function<bool(bool)> may_release_;
  hooks::ConsolePort& inner_;
  std::atomic<uint64_t> output_icount_{0};
  std::atomic<uint64_t> released_{0};
  mutable std::mutex mutex_;
  bool gated_ = false;
  uint64_t acked_ = 0;
  std::deque<Held> held_;
  std::string release_buffer_;  // reused: the lines one drain releases together
  std::vector<double> latencies_us_;
};

class OutputTail final : public hooks::ConsolePort {
 public:
  // Bytes produced so far by the replay.
  uint64_t produced() const { return produced_; }
  // Drops what is known to be released (the primary's OUTPUT_RELEASED marker).
  void trim_released(uint64_t released);
  // What was produced after `released`: the bytes a promoted secondary re-emits.
  std::string unconfirmed(uint64_t released) const;

  size_t read_input(std::vector<uint8_t>&, size_t) override { return 0; }
  bool wait_input(std::chrono::nanoseconds) override { return false; }
  bool input_closed() const override { return true; }
  void write_output(std::span<const uint8_t> bytes) override;

 private:
  uint64_t produced_ = 0;
  uint64_t base_ = 0;  // byte index of tail_[0]
  std::string tail_;
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
