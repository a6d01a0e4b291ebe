#pragma once
// The pair state machine: a node's role and state, and the one table of the moves between
// them. Every move is logged with its reason; a move the table does not list is logged as a
// bug (critical) and still made, so a missing row shows up in the logs and tests, never as a
// node stuck half-way through a failover.
//
//   primary    STANDALONE -> SYNCING -> PROTECTED -> STANDALONE (secondary lost, unprotect)
//              any -> FENCED (lease lost)       FENCED -> secondary STANDBY (demoted)
//              PROTECTED -> secondary STANDBY (planned handover)
//   secondary  STANDBY -> SYNCING -> PROTECTED -> STANDBY (replica dropped)
//              PROTECTED -> primary STANDALONE (go live)
//   either     any -> FAILED (the VM thread stopped)
#include <string_view>

#include "control/status.h"

namespace tandem::replicator {

// The role and state enums are the status schema's (control/status.h), so tandemctl reads
// them without linking the node.
using control::PairState;
using control::Role;
using control::to_string;

class PairStateMachine {
 public:
  // A primary starts STANDALONE, a secondary STANDBY.
  explicit PairStateMachine(Role role);
  Role role() const { return role_; }
  PairState state() const { return state_; }
  bool is(Role role, PairState state) const { return role_ == role && state_ == state; }

  // Moves to `state` (same role), logging `why`. Staying where it is is not a move.
  void to(PairState state, std::string_view why) { to(role_, state, why); }
  // Moves to another role and state (a promotion, a handover, a demotion).
  void to(Role role, PairState state, std::string_view why);

  // The table: may a node in (from_role, from) move to (to_role, to)?
  static bool allowed(Role from_role, PairState from, Role to_role, PairState to);

 private:
  Role role_;
  PairState state_;
};

}  // namespace tandem::replicator
