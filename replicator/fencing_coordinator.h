#pragma once
// The fencing decisions of a Node (docs/fencing.md), and the monitor thread that makes
// them: heartbeats on the link both ways, the link's silence limit, and, with an arbiter,
// what a lost link means (the second heartbeat path decides between a lost link and a lost
// peer), asking the arbiter for the lease (secondary) or to advance the epoch past a
// silent secondary (primary), giving up a stale replica, the fenced primary (lease lost)
// and its tries to rejoin its old peer as a secondary.
//
// In short (docs/fencing.md): With [fencing] arbiter = "none" the pair behaves as before
// the arbiters: a secondary promotes when its link drops, a primary that loses its
// secondary goes STANDALONE at once. With an arbiter:
//  - a primary acquires the lease before it boots the guest and releases output only while
//    LeaseKeeper::may_release_output(), or while PROTECTED and the secondary's acks are fresh
//    (fencing::AckFreshness: the secondary cannot be live yet; docs/fencing.md "Output while
//    the arbiter is away"), so a witness restart does not stop a healthy pair;
//  - a primary that loses the link holds its output until the second path decides: the
//    peer still heard there (or its process gone: EOF) → STANDALONE, keeping the lease;
//    every path silent → it asks the arbiter to advance the epoch (a CAS: only while it
//    holds the lease) and goes STANDALONE under epoch + 1 once that is confirmed; the
//    secondary's older replica is refused by the arbiter from then on. Unconfirmed, output
//    stays held (the lease may lapse and the secondary take over: the advance is refused);
//  - a secondary that loses the link drops its replica (STANDBY) when the second path still
//    hears the primary (the primary goes on alone, the replica is stale); when every path
//    is silent it asks the arbiter every lease/4 and goes live with the granted epoch; if
//    the arbiter refuses its epoch (advanced by the primary), the lease stays held for 3
//    leases, or the primary is heard again, it gives up;
//  - a FENCED primary retries its [pair] peer; the live primary there refuses it (stale
//    epoch, "resync") and it becomes an empty STANDBY secondary, ready to be protected.
#include <functional>
#include <string>
#include <vector>

#include "replicator/node_core.h"

namespace tandem::replicator {

class FencingCoordinator {
 public:
  explicit FencingCoordinator(NodeCore& node) : n_(node) {}

  // The monitor thread's body: returns when the node stops.
  void monitor_loop();
  // Secondary, under `mutex`: ask the arbiter for the lease; a grant becomes a promotion
  // (the VM thread goes live), a refusal of this replica drops it unless `planned`.
  void start_promotion_locked(const std::string& why, bool planned = false);
  // Secondary, under `mutex`: the replica can no longer become the primary.
  void abandon_replica_locked(const std::string& why);
  // LeaseKeeper: the lease is lost (refused renewal) or yielded. No output from here on.
  void on_fenced(const std::string& why);

 private:
  void fencing_tick_locked(Clock::time_point now, std::vector<std::function<void()>>& after);
  void try_rejoin();
  void on_rejoin_refused(const std::string& reason);
  void on_epoch_advanced(const fencing::Grant& g);

  NodeCore& n_;
};

}  // namespace tandem::replicator
