#pragma once
// Live: the standalone World (`tandem run`). Console output goes to a ConsolePort
// (normally stdio), console input is polled at service points, and idle waits skip
// straight to the next timer deadline. Nothing is logged, so a Live run is reproducible
// only when its inputs are (e.g. stdin from /dev/null or a file, read at the same icounts);
// its entropy is a fixed function of the icount, so it never makes two runs differ.
#include <csignal>
#include <cstdint>
#include <vector>

#include "vmm-hooks/console_port.h"
#include "vmm-hooks/net_port.h"
#include "vmm/world.h"

namespace tandem::hooks {

struct LiveOptions {
  // Instructions between console polls: a poll costs one poll(2), ~1 µs, against a slice
  // of ~10 ms of guest work.
  uint64_t poll_interval = 1u << 20;
  // When the console is interactive (a terminal), sleep through timer waits in real time
  // so the guest's clock does not run ahead of the user; otherwise skip them instantly.
  bool interactive = false;
  // Set asynchronously (e.g. by a SIGINT handler): idle waits give up and return false.
  const volatile std::sig_atomic_t* interrupted = nullptr;
  // The NIC's host side (nullptr: no network). With a network, timer waits pass in real time
  // (cut short by a frame or console input), so the guest's clock keeps pace with its peers.
  NetPort* net = nullptr;
};

class Live : public vmm::World {
 public:
  explicit Live(ConsolePort& console, LiveOptions options = {});

  uint64_t next_service_icount(uint64_t now) override;
  void service(vmm::Machine& machine) override;
  bool idle(vmm::Machine& machine, uint64_t deadline_mtime) override;
  // Console bytes go to the console, frames to the NIC's host side (dropped and counted
  // without one).
  void output(vmm::OutputChannel channel, uint64_t icount, std::span<const uint8_t> bytes) override;
  void entropy(uint64_t icount, std::span<uint8_t> out) override;

  // Writes out any buffered guest output (called at exit).
  void flush();
  uint64_t net_frames_dropped() const { return net_frames_dropped_; }

 private:
  // Moves waiting console input into the UART as far as its FIFO allows; true if any moved.
  bool deliver_input(vmm::Machine& machine);
  // Moves received frames into the NIC while it has receive buffers; true if any moved.
  bool deliver_frames(vmm::Machine& machine);
  bool interrupted() const { return options_.interrupted && *options_.interrupted; }

  ConsolePort& console_;
  LiveOptions options_;
  std::vector<uint8_t> pending_input_;  // read from the console, not yet in the UART
  std::vector<uint8_t> frame_;          // scratch for one received frame
  // Where the entropy stream is: several requests in one instruction get different bytes.
  uint64_t entropy_icount_ = UINT64_MAX;
  uint64_t entropy_requests_ = 0;
  uint64_t net_frames_dropped_ = 0;
};

}  // namespace tandem::hooks
