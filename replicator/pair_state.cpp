#include "replicator/pair_state.h"

#include <spdlog/spdlog.h>

namespace tandem::replicator {

namespace {

struct Move {
  Role from_role;
  PairState from;
  Role to_role;
  PairState to;
};

using enum control::PairState;
constexpr Role P = Role::Primary;
constexpr Role S = Role::Secondary;

// Every move a node makes. FAILED is reachable from anywhere (not listed).
constexpr Move kMoves[] = {
    // The primary protects a secondary, and loses it.
    {P, Standalone, P, Syncing},    // a secondary connected: pre-copy
    {P, Syncing, P, Protected},     // the secondary verified the sync
    {P, Syncing, P, Standalone},    // the pre-copy stopped, or the link was lost
    {P, Protected, P, Standalone},  // secondary lost, unprotect, or the epoch advanced past it
    // Fencing: the lease is lost or yielded; a fenced primary is refused by the live one.
    {P, Standalone, P, Fenced},
    {P, Syncing, P, Fenced},
    {P, Protected, P, Fenced},
    {P, Fenced, S, Standby},
    // Planned handover: the primary becomes an empty standby (also when the link dropped
    // while it waited for its last output to be acknowledged).
    {P, Protected, S, Standby},
    {P, Standalone, S, Standby},
    // The secondary is synced, and drops its replica (link lost mid-sync, sync refused,
    // divergence, a gap in the log, the primary went on alone).
    {S, Standby, S, Syncing},
    {S, Syncing, S, Protected},
    {S, Syncing, S, Standby},
    {S, Protected, S, Standby},
    // Failover: the replica goes live.
    {S, Protected, P, Standalone},
};

}  // namespace

PairStateMachine::PairStateMachine(Role role)
    : role_(role), state_(role == Role::Primary ? Standalone : Standby) {}

bool PairStateMachine::allowed(Role from_role, PairState from, Role to_role, PairState to) {
  if (to == Failed) return true;
  for (const Move& m : kMoves) {
    if (m.from_role == from_role && m.from == from && m.to_role == to_role && m.to == to) return true;
  }
  return false;
}

void PairStateMachine::to(Role role, PairState state, std::string_view why) {
  if (role == role_ && state == state_) return;
  if (allowed(role_, state_, role, state)) {
    spdlog::info("pair: {} {} -> {} {} ({})", to_string(role_), to_string(state_), to_string(role), to_string(state),
                 why);
  } else {
    spdlog::critical("pair: {} {} -> {} {} ({}) is not in the state table", to_string(role_), to_string(state_),
                     to_string(role), to_string(state), why);
  }
  role_ = role;
  state_ = state;
}

}  // namespace tandem::replicator
