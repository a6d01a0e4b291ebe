#pragma once
// The secondary's side of the pair, on the VM thread: it applies the pre-copy
// (PrecopyReceiver), replays the primary's log a little behind it (acks with the executed
// icount, audits, output tail), drops a replica that diverged or has a gap, and goes live
// when a promotion is decided (a lost primary or a handover): the same machine continues
// under the primary's World, with the output it cannot confirm as released emitted again.
#include <memory>

#include "replicator/node_core.h"

namespace tandem::replicator {

class FencingCoordinator;
class PrecopyReceiver;
class PrimaryRole;

class SecondaryRole {
 public:
  SecondaryRole(NodeCore& node, PrecopyReceiver& receiver, PrimaryRole& primary, FencingCoordinator& fencing)
      : n_(node), receiver_(receiver), primary_(primary), fencing_(fencing) {}

  // Applies syncs and replays until the node stops (Stop) or this node went live (Primary).
  NextRole run();
  // I/O thread: StreamBatchSource refused a batch out of sequence. The replica cannot
  // follow: it is dropped (STANDBY, never promoted) and the primary told, as for a
  // divergence.
  void on_log_gap(const std::shared_ptr<Link>& l, const std::shared_ptr<StreamBatchSource>& s);

 private:
  bool replay_until_promotion();
  void report_divergence(const hooks::Divergence& d);
  void wait_out_holdoff();
  void go_live();

  NodeCore& n_;
  PrecopyReceiver& receiver_;
  PrimaryRole& primary_;
  FencingCoordinator& fencing_;
};

}  // namespace tandem::replicator
