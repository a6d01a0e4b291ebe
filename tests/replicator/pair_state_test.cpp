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
  EXPECT_FALSE(EpochStore(dir.string()).load());     // no file yet: a first start
  EXPECT_TRUE(EpochStore(dir.string()).store(7));    // creates the directory
  EXPECT_EQ(EpochStore(dir.string()).load(), 7u);
  EXPECT_TRUE(EpochStore(dir.string()).store(12));
  EXPECT_EQ(EpochStore(dir.string()).load(), 12u);
  EXPECT_FALSE(std::filesystem::exists(dir / "epoch.tmp"));  // renamed over the old file
  std::filesystem::remove_all(dir);
}

// A corrupt epoch file stops the node with a message naming it: falling back to epoch 1 (the
// old behaviour) could let a restarted node act under an epoch the pair has left behind.
TEST(EpochStore, ACorruptFileIsRefusedNotTakenForAFirstStart) {
  const auto dir = std::filesystem::temp_directory_path() / ("tandem-epoch-bad-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  for (const std::string content : {"garbage\n", "", "0\n", "12x\n", "7\n8\n", "-3\n", "99999999999999999999999\n"}) {
    std::ofstream(dir / "epoch", std::ios::trunc) << content;
    try {
      (void)EpochStore(dir.string()).load();
      ADD_FAILURE() << "accepted an epoch file holding \"" << content << "\"";
    } catch (const EpochFileError& e) {
      EXPECT_NE(std::string(e.what()).find((dir / "epoch").string()), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("refusing to start"), std::string::npos) << e.what();
    }
  }
  std::filesystem::remove_all(dir);
}

// A crash after the temporary file was written but before the rename leaves the old epoch in
// force; the next store replaces the stale temporary file.
TEST(EpochStore, ACrashBeforeTheRenameLeavesTheOldEpoch) {
  const auto dir = std::filesystem::temp_directory_path() / ("tandem-epoch-crash-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(EpochStore(dir.string()).store(5));
  std::ofstream(dir / "epoch.tmp", std::ios::trunc) << "9\n";  // written, never renamed
  EXPECT_EQ(EpochStore(dir.string()).load(), 5u);
  std::ofstream(dir / "epoch.tmp", std::ios::trunc) << "9";  // half written
  EXPECT_EQ(EpochStore(dir.string()).load(), 5u);
  ASSERT_TRUE(EpochStore(dir.string()).store(6));
  EXPECT_EQ(EpochStore(dir.string()).load(), 6u);
  EXPECT_FALSE(std::filesystem::exists(dir / "epoch.tmp"));
  std::filesystem::remove_all(dir);
}

// A write that cannot happen is reported (false, and an error in the log), not ignored.
TEST(EpochStore, AFailedWriteIsReported) {
  const auto file = std::filesystem::temp_directory_path() / ("tandem-epoch-file-" + std::to_string(::getpid()));
  std::ofstream(file) << "not a directory\n";
  EXPECT_FALSE(EpochStore(file.string()).store(3));  // the state directory is a regular file
  std::filesystem::remove(file);
}

TEST(EpochStore, WithoutAStateDirectoryNothingIsKept) {
  EpochStore none("");
  EXPECT_TRUE(none.store(9));
  EXPECT_FALSE(none.load());
  EXPECT_EQ(none.path(), "");
}

}  // namespace
}  // namespace tandem::replicator
