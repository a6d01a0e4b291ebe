#pragma once
// The primary's side of the pair, on the VM thread: the lease before boot, the boot, the
// run loop (commands from the control and link threads between guest slices: protect →
// pre-copy, unprotect, handover, a fenced pause), flow control (the guest waits while the
// secondary is more than max_lag behind), the planned handover, and the demotion of a
// fenced primary the live one refused. It is the PrimaryRun of its World (PrimaryWorld).
#include "replicator/node_core.h"
#include "replicator/primary_world.h"

namespace tandem::replicator {

class PrecopySender;

class PrimaryRole final : public PrimaryRun {
 public:
  PrimaryRole(NodeCore& node, PrecopySender& sender) : n_(node), sender_(sender) {}

  // Acquires the lease (retrying while another node holds it) and takes the granted
  // epoch. False when the node stopped meanwhile.
  bool wait_for_boot_lease();
  // Builds the machine of [vm] under a fresh console, gate and Recorder.
  void boot();
  // The console, the output gate and the Recorder the machine runs under as a primary
  // (a cold boot, or a replica going live).
  void open_console();
  // Runs the guest until the node stops (Stop) or this node becomes a standby secondary
  // (Secondary: after a handover, or refused as a fenced primary).
  NextRole run();

  // PrimaryRun: called by the primary's World on the VM thread.
  void at_service(vmm::Machine& m) override { throttle(m); }
  void at_idle(vmm::Machine& m) override;

 private:
  void demote_to_standby();
  void drop_vm();
  void throttle(vmm::Machine& m);
  bool do_handover();

  NodeCore& n_;
  PrecopySender& sender_;
};

}  // namespace tandem::replicator
