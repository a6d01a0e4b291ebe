#pragma once
// Where the guest's NIC goes: a host network backend (hostnet/: libslirp user networking or
// a TAP device). A Live or Recorder World takes received frames from a NetPort at its
// service points (only when the NIC has a receive buffer, so a frame is never lost to a
// guest that is merely slow) and hands it every frame the guest transmits. Like ConsolePort,
// nothing here blocks the machine; waits happen only while the guest idles.
#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#include "vmm-hooks/console_port.h"
#include "vmm-hooks/output.h"

namespace tandem::hooks {

// As an OutputPort (the Net channel's port), write_output(frame) is send(frame): released
// output reaches it whole, one frame per call.
class NetPort : public OutputPort {
 public:
  // Moves the oldest received frame into `frame` (replacing its contents); false if none
  // is waiting. Never blocks.
  virtual bool receive(std::vector<uint8_t>& frame) = 0;
  // Waits until a received frame is waiting or `timeout` passes; true if one is.
  virtual bool wait_frame(std::chrono::nanoseconds timeout) = 0;
  // A frame the guest transmitted (an Ethernet frame, within the NIC's MTU). Never blocks:
  // a backend that cannot keep up drops it, as a congested link would.
  virtual void send(std::span<const uint8_t> frame) = 0;
  void write_output(std::span<const uint8_t> frame) final { send(frame); }
};

// Waits until console input is available, or (when `frames_wanted`, i.e. the guest has a
// receive buffer) a frame from `net`, or `timeout` passes. True if something is available.
// Without a NetPort this is console.wait_input(timeout), except that with the console closed
// it sleeps for `timeout` (no source can end the wait early).
bool wait_console_or_net(ConsolePort& console, NetPort* net, bool frames_wanted,
                         std::chrono::nanoseconds timeout);

}  // namespace tandem::hooks
