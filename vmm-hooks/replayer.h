#pragma once
// Replayer: the secondary's World. It feeds the machine the recorded inputs at exactly the
// recorded icounts, applies recorded time adjustments and idle skips, never reads a host
// clock or host input, and checks AUDIT and OUTPUT_DIGEST records as it passes them. The
// first mismatch is a divergence: the replayer records where and stops the run.
#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <optional>
#include <string>

#include "proto/event_log.pb.h"
#include "vmm-hooks/batch_stream.h"
#include "vmm-hooks/console_port.h"
#include "vmm-hooks/output.h"
#include "vmm/machine.h"
#include "vmm/world.h"

namespace tandem::hooks {

struct Divergence {
  uint64_t icount = 0;
  std::string what;        // "state hash", "output digest", "idle", "entropy", ...
  uint64_t expected = 0;   // from the log
  uint64_t actual = 0;     // from this replay
};

struct ReplayEnd {
  vmm::Exit exit = vmm::Exit::Running;
  uint32_t code = 0;
  uint64_t icount = 0;
};

class Replayer : public vmm::World {
 public:
  // `output` receives the guest's console output (nullptr: swallowed); other channels are dropped.
  Replayer(BatchSource& source, ConsolePort* output, bool verify = true);
  // `output` receives all output, every channel, with its icount (a secondary keeps what it
  // cannot confirm as released: replicator::OutputTail).
  Replayer(BatchSource& source, OutputSink& output, bool verify = true);
  Replayer(const Replayer&) = delete;
  Replayer& operator=(const Replayer&) = delete;

  // The NIC the log was recorded with (nullopt: none), for building the replay machine.
  // Throws LogError for a malformed NIC description.
  static std::optional<vmm::NicConfig> recorded_nic(const log::LogHeader& header);

  // Checks the machine against the header (config and initial state hash). Returns an
  // error message, or an empty string if it matches.
  static std::string check_header(const log::LogHeader& header, vmm::Machine& machine);

  // The icount the driver should run to next: the next record's (one past it for entropy
  // and idle skips), the recorded END, or, when the log ended without one (an interrupted
  // recording), the end of what it covers; UINT64_MAX if nothing is pending and more may come.
  uint64_t stop_icount();
  const std::optional<Divergence>& divergence() const { return divergence_; }
  const std::optional<ReplayEnd>& end() const { return end_; }
  bool log_exhausted();  // no record is left and no more batches will come
  uint64_t records_applied() const { return records_applied_; }
  // Live streams: every record before this icount has been received.
  uint64_t complete_to() const { return complete_to_; }
  uint64_t audits_checked() const { return audits_checked_; }
  uint64_t output_digest() const { return output_digest_; }
  uint64_t frame_digest() const { return frame_digest_; }
  uint64_t frames_sent() const { return frames_sent_; }
  // Where the guest's transmitted frames also go (nullptr, the default: only to the
  // OutputSink if one was given). Frames are checked against the log's NET_TX_DIGEST either way.
  void set_frame_output(std::function<void(uint64_t icount, std::span<const uint8_t> frame)> out) {
    frame_output_ = std::move(out);
  }
  // The latest OUTPUT_RELEASED marker of `channel`: bytes the recording side had released.
  uint64_t released_output(vmm::OutputChannel channel = vmm::OutputChannel::Console) const {
    return released_output_[static_cast<size_t>(channel)];
  }
  // Hands buffered console output (an incomplete line) to the output now.
  void flush_output();

  // Runs the machine along the log until the recorded end, a divergence, the end of an
  // interrupted log (the last batch's complete_to_icount, or its last record), or
  // max_icount. After it: divergence(), end(). Only for a finite log (a file): at the
  // frontier of a live stream it runs on.
  vmm::RunResult run(vmm::Machine& machine, uint64_t max_icount = UINT64_MAX);

  // vmm::World
  uint64_t next_service_icount(uint64_t now) override;
  void service(vmm::Machine& machine) override;
  bool idle(vmm::Machine& machine, uint64_t deadline_mtime) override;
  void output(vmm::OutputChannel channel, uint64_t icount, std::span<const uint8_t> bytes) override;
  void entropy(uint64_t icount, std::span<uint8_t> out) override;

 private:
  const log::Record* peek();  // next record not yet applied, pulling batches as needed
  bool pull();                // appends the next available batch to pending_; false if none
  // Applies the records due at machine.icount(); `idling` when the guest waits in WFI,
  // which must match an IDLE_SKIP. True if any record was applied.
  bool apply_due(vmm::Machine& machine, bool idling);
  bool apply_service_records(vmm::Machine& machine);
  // True while nothing is pending and a live source may still deliver more.
  bool at_frontier(uint64_t icount);
  void diverge(uint64_t icount, std::string what, uint64_t expected, uint64_t actual);

  BatchSource& source_;
  DirectOutput direct_;   // a ConsolePort as the output
  OutputSink* output_;    // nullptr: output swallowed
  bool verify_;
  bool source_done_ = false;
  std::deque<log::Record> pending_;
  std::optional<Divergence> divergence_;
  std::optional<ReplayEnd> end_;
  uint64_t last_record_icount_ = 0;
  uint64_t records_applied_ = 0;
  uint64_t audits_checked_ = 0;
  uint64_t output_digest_;
  std::array<uint64_t, vmm::kOutputChannels> released_output_{};
  uint64_t frame_digest_;
  uint64_t frames_sent_ = 0;
  std::function<void(uint64_t, std::span<const uint8_t>)> frame_output_;
  uint64_t complete_to_ = 0;
  std::string output_scratch_;  // console output up to the end of its line
  uint64_t output_scratch_icount_ = 0;
};

}  // namespace tandem::hooks
