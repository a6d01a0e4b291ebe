#pragma once
// The primary's World: a Recorder whose output (every channel, with its icount) goes
// through the output gate, and that logs how far each channel's output has been released.
// What the run does at the World's call points (flow control, progress for status) comes
// through PrimaryRun: the World never reaches into the node.
#include <array>
#include <cstdint>

#include "replicator/output_gate.h"
#include "vmm-hooks/recorder.h"

namespace tandem::replicator {

class PrimaryRun {
 public:
  virtual ~PrimaryRun() = default;
  virtual void at_service(vmm::Machine& m) = 0;  // after the Recorder's service
  virtual void at_idle(vmm::Machine& m) = 0;     // before the guest's idle wait
};

class PrimaryWorld final : public hooks::Recorder {
 public:
  PrimaryWorld(PrimaryRun& run, hooks::ConsolePort& input, OutputGate& gate, hooks::RecorderOptions options)
      : Recorder(input, gate, options), run_(run), gate_(gate) {}
  void service(vmm::Machine& m) override;
  bool idle(vmm::Machine& m, uint64_t deadline) override;
  // A new log starts (protection): its markers count from 0, as the gate's counts do.
  void restart_release_markers() { logged_released_.fill(0); }

 private:
  void log_release_markers(vmm::Machine& m);
  PrimaryRun& run_;
  OutputGate& gate_;
  std::array<uint64_t, vmm::kOutputChannels> logged_released_{};
};

}  // namespace tandem::replicator
