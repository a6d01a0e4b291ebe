#include "replicator/primary_world.h"

#include "vmm/machine.h"

namespace tandem::replicator {

void PrimaryWorld::log_release_markers(vmm::Machine& m) {
  if (!recording()) return;
  for (size_t c = 0; c < vmm::kOutputChannels; ++c) {
    const auto channel = static_cast<vmm::OutputChannel>(c);
    const uint64_t released = gate_.released_bytes(channel);
    if (released != logged_released_[c]) {
      log_output_released(m.icount(), channel, released);
      logged_released_[c] = released;
    }
  }
}

void PrimaryWorld::service(vmm::Machine& m) {
  gate_.pump();  // output held while the lease was being renewed late
  // The marker goes first: Recorder::service may flush with complete_to = this icount, and
  // the replica serves an icount once when it gets there, so a record logged here after
  // that flush would be skipped (a spurious "missed OUTPUT_RELEASED" divergence).
  log_release_markers(m);
  Recorder::service(m);
  run_.at_service(m);
}

bool PrimaryWorld::idle(vmm::Machine& m, uint64_t deadline) {
  log_release_markers(m);
  run_.at_idle(m);
  const bool woke = Recorder::idle(m, deadline);
  if (!woke && recording()) {
    // The node interrupted the wait to handle a command: the replayer must see this idle
    // too (as a zero skip), since the guest carries on after its WFI.
    log_record(m.icount(), log::IDLE_SKIP, 0);
    flush();
  }
  return woke;
}
}  // namespace tandem::replicator
