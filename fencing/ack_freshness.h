#pragma once
// fencing::AckFreshness: how long a PROTECTED primary may go on releasing output that its
// secondary acknowledged, without a valid lease (the arbiter is unreachable: a witness
// restart, a network blip). docs/fencing.md, "Output while the arbiter is away".
//
// The argument, in short:
//  1. Acknowledged output is in the secondary's history: it goes live only after executing
//     all the log it received (the output rule already makes output wait for the ack).
//  2. Timing: the secondary never goes live sooner than `holdoff` (its clock) after the last
//     message it received from the primary on the link, and acknowledges nothing once its
//     link is closed. It announces `holdoff` in every Ack.
//  3. An Ack names the last batch received (its sequence), a Heartbeat echoes the last
//     primary heartbeat received (its sent_ns). The primary looks up when *it* sent that
//     batch or heartbeat (`sent`, its clock; an unknown token gives nothing). The
//     secondary received it after `sent`, so it cannot be live before sent + holdoff.
//  4. So the primary releases acknowledged output while
//       now < sent + holdoff * (1 - 0.05) - holdoff / 4
//     5 % for the two clocks' rates (as the lease), a quarter of holdoff for a release
//     decided just before the limit but still being written, and scheduling delay.
// A thawed primary reading acks that queued up while it was frozen finds them stale: they
// name what it sent before the freeze. STANDALONE output always needs the lease (disarmed).
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <utility>

namespace tandem::fencing {

class AckFreshness {
 public:
  using Clock = std::chrono::steady_clock;
  // Tokens remembered per kind; older ones are forgotten (an ack naming one gives nothing).
  static constexpr size_t kMaxRemembered = 8192;

  // How long after `sent` acknowledged output may leave, for a secondary's holdoff.
  static Clock::duration window(std::chrono::milliseconds holdoff);

  void reset();   // a new link: forget every token and all freshness; disarmed
  void arm();     // PROTECTED on this link: fresh acks may release output
  void disarm();  // link lost, fenced, handover, unprotect, stop: the lease alone decides
  bool armed() const;

  // The primary sent batch `sequence` / heartbeat `token` (its sent_ns) on the link at `at`.
  void batch_sent(uint64_t sequence, Clock::time_point at = Clock::now());
  void heartbeat_sent(uint64_t token, Clock::time_point at);
  // The secondary acknowledged up to batch `sequence` and holds off `holdoff` (0: a
  // secondary that makes no such promise, e.g. an older version: no freshness).
  void batch_acknowledged(uint64_t sequence, std::chrono::milliseconds holdoff);
  // The secondary echoed heartbeat `token` (counted with the holdoff of its last Ack).
  void heartbeat_echoed(uint64_t token);

  // Armed and inside the window of the newest acknowledged batch or echoed heartbeat.
  bool fresh(Clock::time_point now = Clock::now()) const;
  // -1 when not fresh (disarmed, nothing acknowledged, or passed), else ms left.
  int64_t ms_left(Clock::time_point now = Clock::now()) const;

 private:
  using Sent = std::deque<std::pair<uint64_t, Clock::time_point>>;
  static void remember(Sent& sent, uint64_t token, Clock::time_point at);
  void confirm_locked(Sent& sent, uint64_t token);

  mutable std::mutex mutex_;
  bool armed_ = false;
  std::chrono::milliseconds holdoff_{0};
  Sent batches_, heartbeats_;
  Clock::time_point fresh_until_{};
};

// The output gate's release decision on a primary with an arbiter: the lease is valid, or
// the output was acknowledged by the secondary (gated: the output rule held it until then)
// and the acks are fresh.
bool may_release_output(bool lease_valid, bool acknowledged, const AckFreshness& acks,
                        AckFreshness::Clock::time_point now = AckFreshness::Clock::now());

}  // namespace tandem::fencing
