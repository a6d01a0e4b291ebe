#pragma once
// The output rule, for every output channel (console bytes, network frames): output is held
// until the secondary has acknowledged the log up to the icount that produced it, then asks
// the fencing release policy whether it may leave, and leaves in the order it was produced.
// One gate, one queue: console and network output cannot overtake each other's rule.
//
// Threads: output() and pump() come from the VM thread, acknowledge() from the link's I/O
// thread (the release then runs there: a reply reaches its client without a thread hop);
// the ports are written under the gate's lock, one writer at a time.
#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "fencing/release_policy.h"
#include "vmm-hooks/output.h"

namespace tandem::replicator {

class OutputGate final : public hooks::OutputSink {
 public:
  // Released output goes to the channel's port (nullptr: dropped, but counted as released).
  explicit OutputGate(hooks::OutputPort* console, hooks::OutputPort* net = nullptr);

  // Gate closed: output waits for acknowledgements. Open: output passes at once (no
  // secondary) and anything held is released.
  void set_gated(bool gated);
  // The secondary has the log up to (not including) `icount`: release what it covers.
  void acknowledge(uint64_t icount);
  // Self-fencing: output leaves only while the policy allows it; otherwise it is held and
  // released later by an acknowledge() or pump() once allowed again. Unset: always allowed.
  // The policy must outlive the gate (or be unset first).
  void set_release_policy(fencing::ReleasePolicy* policy);
  // Bytes released so far on `channel` (what OUTPUT_RELEASED logs), and bytes held now.
  uint64_t released_bytes(vmm::OutputChannel channel = vmm::OutputChannel::Console) const {
    return released_[index(channel)].load();
  }
  uint64_t held_bytes() const;
  // One channel's state for tandemctl status: held and released bytes and items (an item is
  // one output() call: a console write, a network frame), and the latency of recent releases.
  struct ChannelState {
    uint64_t held_bytes = 0, held_items = 0, released_bytes = 0, released_items = 0;
    double latency_p50_us = -1, latency_max_us = -1;  // the last kLatencyWindow releases; -1: none
  };
  static constexpr size_t kLatencyWindow = 1000;
  ChannelState state(vmm::OutputChannel channel) const;
  // Protection restarts counting where the secondary starts.
  void reset_counts();
  // Output-commit latency samples of `channel` (µs from production to release), drained.
  std::vector<double> take_latencies(vmm::OutputChannel channel = vmm::OutputChannel::Console);

  // hooks::OutputSink
  void output(vmm::OutputChannel channel, uint64_t icount, std::span<const uint8_t> bytes) override;
  void flush() override;
  void pump() override;  // releases what is releasable now

 private:
  using Clock = std::chrono::steady_clock;
  struct Held {
    vmm::OutputChannel channel;
    uint64_t icount;
    std::string bytes;
    Clock::time_point produced;
  };
  static size_t index(vmm::OutputChannel c) { return static_cast<size_t>(c); }
  void release_locked(vmm::OutputChannel channel, std::span<const uint8_t> bytes, Clock::time_point produced,
                      uint64_t items = 1);
  void note_latency_locked(vmm::OutputChannel channel, Clock::time_point produced, Clock::time_point released);
  bool releasable_locked(uint64_t icount) const;
  void drain_locked();

  std::array<hooks::OutputPort*, vmm::kOutputChannels> ports_;
  std::array<std::atomic<uint64_t>, vmm::kOutputChannels> released_{};
  std::array<std::atomic<uint64_t>, vmm::kOutputChannels> released_items_{};
  std::array<std::deque<double>, vmm::kOutputChannels> recent_us_;  // the last kLatencyWindow samples
  mutable std::mutex mutex_;
  fencing::ReleasePolicy* policy_ = nullptr;
  bool gated_ = false;
  uint64_t acked_ = 0;
  std::deque<Held> held_;
  std::string release_buffer_;  // reused: the console lines one drain releases together
  std::array<std::vector<double>, vmm::kOutputChannels> latencies_us_;
};

}  // namespace tandem::replicator
