#pragma once
// Recorder: the primary's World. It takes inputs from the world (console, entropy, the host
// clock), injects them into the machine, and appends each to the event log stamped with the
// icount at which it took effect. Every AUDIT interval it logs the machine's state hash.
// Output (every channel) goes to an OutputSink with the icount that produced it: straight
// to the console, or through the pair's output gate.
#include <chrono>
#include <csignal>
#include <cstdint>
#include <memory>
#include <string>

#include "proto/event_log.pb.h"
#include "vmm-hooks/batch_stream.h"
#include "vmm-hooks/console_port.h"
#include "vmm-hooks/net_port.h"
#include "vmm-hooks/output.h"
#include "vmm/machine.h"
#include "vmm/world.h"

namespace tandem::hooks {

// Running digest of all output, every channel (FNV-1a 64, byte by byte: cheap on the output
// path, and independent of how either side buffers).
inline constexpr uint64_t kOutputDigestSeed = 0xcbf29ce484222325ull;
inline uint64_t chain_output_digest(uint64_t digest, uint8_t byte) {
  return (digest ^ byte) * 0x100000001b3ull;
}

// Running digest of all transmitted frames: each frame's XXH3-64 over its icount and bytes,
// seeded by the digest so far.
inline constexpr uint64_t kFrameDigestSeed = 0x74616e64656d2d6eull;  // "tandem-n"
uint64_t chain_frame_digest(uint64_t digest, uint64_t icount, std::span<const uint8_t> frame);

// XXH3-64 of a file's bytes (the guest's identity in the log header); 0 if unreadable.
uint64_t file_digest(const std::string& path);

enum class GuestTime {
  // Guest time follows wall time: idle waits last as long as the guest asked for (cut
  // short by input) and a guest that falls behind is moved forward by logged TIME_ADJUST
  // records (QEMU's icount shift=auto, but recorded).
  Wall,
  // Guest time is icount alone: idle skips jump straight to the next deadline. Fast and
  // still fully recorded; used by tests and benchmarks.
  Virtual,
};

struct RecorderOptions {
  uint64_t audit_interval = 10'000'000;  // instructions between AUDIT records; 0 = none
  uint64_t poll_interval = 1'000'000;    // instructions between console polls
  GuestTime time = GuestTime::Wall;
  // Guest time may lag wall time by this much before a TIME_ADJUST is logged.
  std::chrono::microseconds max_time_lag{2000};
  // A batch is handed to the sink at least this often, so a crash loses little.
  std::chrono::milliseconds flush_interval{20};
  size_t max_batch_records = 1024;
  // When set and non-zero (a signal handler's flag), idle waits end early and return false.
  const volatile std::sig_atomic_t* interrupt_flag = nullptr;
  // The NIC's host side (nullptr: no network). Received frames are logged as NET_RX at the
  // icount they enter the guest; transmitted frames go to it as they are produced.
  NetPort* net = nullptr;
};

class Recorder : public vmm::World {
 public:
  // Console input from `console`; console output straight to it, frames to options.net.
  Recorder(ConsolePort& console, RecorderOptions options = {});
  // Console input from `input` (frames from options.net); output (every channel) to
  // `output` with its icount: the pair's output gate.
  Recorder(ConsolePort& input, OutputSink& output, RecorderOptions options = {});
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  // Builds the log header for a loaded machine (before its first instruction).
  log::LogHeader make_header(vmm::Machine& machine, const std::string& guest_path) const;
  // Starts recording into `sink`: the machine must be loaded and not yet run.
  void begin(vmm::Machine& machine, BatchSink& sink);
  // Logs the END record for a finished run and flushes everything.
  void finish(vmm::Machine& machine, const vmm::RunResult& result);
  // Hands the current batch to the sink (also called on the flush interval). An empty
  // batch is still sent when the icount moved, to advance complete_to_icount.
  void flush();

  // Logs a record the Recorder does not make itself (e.g. OUTPUT_RELEASED) at `icount`,
  // which must not be earlier than the last record. Call from a World callback.
  void log_record(uint64_t icount, log::RecordKind kind, uint64_t value) { add(icount, kind).set_value(value); }
  // Logs OUTPUT_RELEASED for `channel`: `released` bytes of it have left the primary.
  void log_output_released(uint64_t icount, vmm::OutputChannel channel, uint64_t released);
  // Hands console output buffered in the Recorder (an unfinished line) to the sink now.
  void flush_output() { write_pending_output(); }
  // Starts or stops recording to a sink while the machine runs (the live pair: protection
  // begins or ends). Null = no recording: the Recorder then behaves as a Live world.
  void set_sink(vmm::Machine& machine, BatchSink* sink) {
    batch_.Clear();
    if (sink) {
      begin(machine, *sink);
    } else {
      sink_ = nullptr;
    }
  }
  bool recording() const { return sink_ != nullptr; }

  uint64_t records_written() const { return records_written_; }
  uint64_t output_digest() const { return output_digest_; }
  uint64_t frame_digest() const { return frame_digest_; }
  uint64_t frames_sent() const { return frames_sent_; }
  // Sets the NIC's link state as the guest sees it, logged (NET_LINK). Call from a World
  // callback (service or idle), or before the first instruction.
  void set_link(vmm::Machine& machine, bool up);

  // vmm::World
  uint64_t next_service_icount(uint64_t now) override;
  void service(vmm::Machine& machine) override;
  bool idle(vmm::Machine& machine, uint64_t deadline_mtime) override;
  void output(vmm::OutputChannel channel, uint64_t icount, std::span<const uint8_t> bytes) override;
  void entropy(uint64_t icount, std::span<uint8_t> out) override;

 private:
  log::Record& add(uint64_t icount, log::RecordKind kind);
  bool inject_console(vmm::Machine& machine);  // true if input was delivered
  bool inject_frames(vmm::Machine& machine);   // true if a frame was handed to the NIC
  bool inject_all(vmm::Machine& machine) {  // both run, whatever the first one did
    const bool took_console = inject_console(machine);
    const bool took_frames = inject_frames(machine);
    return took_console || took_frames;
  }
  void log_digests(uint64_t icount);
  void write_pending_output();
  bool input_waiting(vmm::Machine& machine);  // input ready and the UART has room
  // Waits for console input; held output that may leave meanwhile is released first.
  bool wait_input(std::chrono::nanoseconds timeout);
  bool interrupted() const;
  void audit_if_due(vmm::Machine& machine);
  void sync_time(vmm::Machine& machine);
  uint64_t wall_ticks() const;  // 10 MHz ticks since begin()
  void maybe_flush();

  ConsolePort& console_;
  DirectOutput direct_;  // the default sink: output straight to the console
  OutputSink& output_;
  RecorderOptions options_;
  BatchSink* sink_ = nullptr;
  log::LogBatch batch_;
  uint64_t next_sequence_ = 0;
  uint64_t last_icount_ = 0;        // the machine's icount at the latest World call
  uint64_t last_complete_to_ = 0;   // complete_to_icount of the last batch sent
  bool output_since_flush_ = false;
  uint64_t records_written_ = 0;
  uint64_t next_audit_ = UINT64_MAX;
  uint64_t output_digest_ = kOutputDigestSeed;
  uint64_t last_logged_digest_ = kOutputDigestSeed;
  std::chrono::steady_clock::time_point start_wall_;
  std::chrono::steady_clock::time_point last_flush_;
  uint64_t start_mtime_ = 0;
  uint64_t frame_digest_ = kFrameDigestSeed;
  uint64_t last_logged_frame_digest_ = kFrameDigestSeed;
  uint64_t frames_sent_ = 0;
  std::vector<uint8_t> input_scratch_;
  std::vector<uint8_t> frame_scratch_;
  std::string output_scratch_;    // console output up to the end of its line
  uint64_t output_scratch_icount_ = 0;  // the icount of its last byte
};


}  // namespace tandem::hooks
