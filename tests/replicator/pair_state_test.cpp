// The pair state machine's table (every move a node makes is listed; the rest are not), and
// the epoch file.
#include "replicator/pair_state.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "replicator/epoch_store.h"

namespace tandem::replicator {
namespace {

constexpr Role P = Role::Primary;
constexpr Role S = Role::Secondary;
using enum control::PairState;

TEST(PairStateMachine, StartsStandaloneAsPrimaryAndStandbyAsSecondary) {
  EXPECT_TRUE(PairStateMachine(P).is(P, Standalone));
  EXPECT_TRUE(PairStateMachine(S).is(S, Standby));
}

TEST(PairStateMachine, TheLifeOfAPairIsInTheTable) {
  // protect, lose the secondary, protect again, hand over, be synced, go live.
  EXPECT_TRUE(PairStateMachine::allowed(P, Standalone, P, Syncing));
  EXPECT_TRUE(PairStateMachine::allowed(P, Syncing, P, Protected));
  EXPECT_TRUE(PairStateMachine::allowed(P, Protected, P, Standalone));
  EXPECT_TRUE(PairStateMachine::allowed(P, Protected, S, Standby));
  EXPECT_TRUE(PairStateMachine::allowed(S, Standby, S, Syncing));
  EXPECT_TRUE(PairStateMachine::allowed(S, Syncing, S, Protected));
  EXPECT_TRUE(PairStateMachine::allowed(S, Protected, P, Standalone));
  // Fencing, and a fenced primary demoted to an empty standby.
  EXPECT_TRUE(PairStateMachine::allowed(P, Protected, P, Fenced));
  EXPECT_TRUE(PairStateMachine::allowed(P, Fenced, S, Standby));
  // Anything can fail.
  EXPECT_TRUE(PairStateMachine::allowed(S, Syncing, S, Failed));
  EXPECT_TRUE(PairStateMachine::allowed(P, Fenced, P, Failed));
}

TEST(PairStateMachine, MovesThatWouldBreakTheInvariantsAreNotInTheTable) {
  // Only a PROTECTED replica may go live: a standby or a half-synced one has no machine.
  EXPECT_FALSE(PairStateMachine::allowed(S, Standby, P, Standalone));
  EXPECT_FALSE(PairStateMachine::allowed(S, Syncing, P, Standalone));
  // A fenced primary releases nothing until it is re-synced as a secondary.
  EXPECT_FALSE(PairStateMachine::allowed(P, Fenced, P, Standalone));
  EXPECT_FALSE(PairStateMachine::allowed(P, Fenced, P, Protected));
  // PROTECTED only through a verified sync.
  EXPECT_FALSE(PairStateMachine::allowed(P, Standalone, P, Protected));
  EXPECT_FALSE(PairStateMachine::allowed(S, Standby, S, Protected));
  // Nothing leaves FAILED.
  EXPECT_FALSE(PairStateMachine::allowed(P, Failed, P, Standalone));
}

TEST(PairStateMachine, AMoveChangesRoleAndState) {
  PairStateMachine m(S);
  m.to(Syncing, "a primary connected");
  m.to(Protected, "synced");
  m.to(P, Standalone, "going live");
  EXPECT_TRUE(m.is(P, Standalone));
  m.to(Standalone, "no move");
  EXPECT_EQ(m.state(), Standalone);
}

TEST(EpochStore, KeepsTheEpochAcrossInstances) {
  const auto dir = std::filesystem::temp_directory_path() / ("tandem-epoch-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  EXPECT_FALSE(EpochStore(dir.string()).load());  // no file yet
  EpochStore(dir.string()).store(7);               // creates the directory
  EXPECT_EQ(EpochStore(dir.string()).load(), 7u);
  std::ofstream(dir / "epoch") << "garbage\n";
  EXPECT_FALSE(EpochStore(dir.string()).load());
  std::filesystem::remove_all(dir);
}

TEST(EpochStore, WithoutAStateDirectoryNothingIsKept) {
  EpochStore none("");
  none.store(9);
  EXPECT_FALSE(none.load());
  EXPECT_EQ(none.path(), "");
}

}  // namespace
}  // namespace tandem::replicator
