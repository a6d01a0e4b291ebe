#pragma once
// Guest output on its way out. The machine hands every output to its World stamped with the
// channel and the icount that produced it (vmm::World::output); a World that keeps it (the
// Recorder, the Replayer) passes it on to an OutputSink, which decides when it leaves: at
// once (DirectOutput), or once the secondary has the log that covers it (the pair's
// OutputGate in replicator/). What leaves goes to one OutputPort per channel.
#include <array>
#include <cstdint>
#include <span>

#include "vmm/world.h"

namespace tandem::hooks {

// Where one channel's output leaves the process: a console, a NIC backend.
class OutputPort {
 public:
  virtual ~OutputPort() = default;
  // Console: bytes (a stream). Net: exactly one frame per call.
  virtual void write_output(std::span<const uint8_t> bytes) = 0;
  virtual void flush() {}
};

// Output stamped with its channel and the icount of the instruction that produced it.
class OutputSink {
 public:
  virtual ~OutputSink() = default;
  virtual void output(vmm::OutputChannel channel, uint64_t icount, std::span<const uint8_t> bytes) = 0;
  // Flushes the ports (what was released so far reaches its destination).
  virtual void flush() {}
  // Releases what may leave now; called while the guest idles (held output must not wait
  // for the guest's next instruction slice).
  virtual void pump() {}
};

// No gate: each channel's output goes straight to its port (nullptr: dropped).
class DirectOutput final : public OutputSink {
 public:
  explicit DirectOutput(OutputPort* console = nullptr, OutputPort* net = nullptr) : ports_{console, net} {}
  void set_port(vmm::OutputChannel channel, OutputPort* port) { ports_[static_cast<size_t>(channel)] = port; }
  void output(vmm::OutputChannel channel, uint64_t, std::span<const uint8_t> bytes) override {
    if (OutputPort* port = ports_[static_cast<size_t>(channel)]) port->write_output(bytes);
  }
  void flush() override {
    for (OutputPort* port : ports_)
      if (port) port->flush();
  }

 private:
  std::array<OutputPort*, vmm::kOutputChannels> ports_;
};

}  // namespace tandem::hooks
