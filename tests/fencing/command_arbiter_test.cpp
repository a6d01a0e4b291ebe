// The STONITH command arbiter with real /bin/sh commands: success, failure with stderr,
// a command that hangs (killed with its children at the timeout), and its environment.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "fencing/arbiter.h"

namespace tandem::fencing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Outcome = Grant::Outcome;
using Clock = std::chrono::steady_clock;

std::unique_ptr<Arbiter> command(const std::string& cmd, std::chrono::milliseconds timeout = 5s) {
  ArbiterConfig c;
  c.kind = "command";
  c.vm_id = "vm1";
  c.fence_command = cmd;
  c.timeout = timeout;
  return make_arbiter(c);
}

TEST(CommandArbiter, ExitZeroGrantsTheNextEpochWithoutALease) {
  auto a = command("true");
  const Grant g = a->acquire("b", 6);
  ASSERT_EQ(g.outcome, Outcome::Granted) << g.why;
  EXPECT_EQ(g.epoch, 7u);
  EXPECT_EQ(g.ttl, 0ms);
  EXPECT_EQ(g.holder, "b");
  const Grant r = a->renew("b", 7);
  EXPECT_TRUE(r.granted());
  EXPECT_EQ(r.epoch, 7u);
  a->release("b", 7);
  EXPECT_EQ(a->describe(), "command true");
}

// Issue 7 with STONITH: a primary drops its silent secondary only once the command powered
// it off; the command sees the epoch it will run under.
TEST(CommandArbiter, AdvanceRunsTheFenceCommandAndGrantsOnlyWhenItSucceeded) {
  const fs::path out = fs::temp_directory_path() / ("tc_advance_" + std::to_string(::getpid()));
  const Grant g = command("echo \"$TANDEM_NODE $TANDEM_EPOCH\" > " + out.string())->advance("a", 4);
  ASSERT_EQ(g.outcome, Outcome::Granted) << g.why;
  EXPECT_EQ(g.epoch, 5u);
  EXPECT_EQ(g.ttl, 0ms);
  std::ifstream in(out);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "a 5");
  fs::remove(out);
  const Grant failed = command("echo cannot reach the PDU >&2; exit 3")->advance("a", 4);
  EXPECT_EQ(failed.outcome, Outcome::Refused);
  EXPECT_NE(failed.why.find("cannot reach the PDU"), std::string::npos) << failed.why;
  EXPECT_EQ(command("sleep 5", 200ms)->advance("a", 4).outcome, Outcome::Unreachable);
}

TEST(CommandArbiter, NonZeroExitIsRefusedWithTheStderrTail) {
  const Grant g = command("false")->acquire("b", 1);
  EXPECT_EQ(g.outcome, Outcome::Refused);
  EXPECT_EQ(g.why, "fence command exited 1");
  const Grant loud = command("echo not this >&2; echo 'ipmitool: BMC 10.0.0.9 unreachable' >&2; exit 3")->acquire("b", 1);
  EXPECT_EQ(loud.outcome, Outcome::Refused);
  EXPECT_EQ(loud.why, "fence command exited 3: not this | ipmitool: BMC 10.0.0.9 unreachable");
  // Only the tail of a long stderr is kept.
  const Grant chatty = command("i=0; while [ $i -lt 2000 ]; do echo line$i >&2; i=$((i+1)); done; exit 2")->acquire("b", 1);
  EXPECT_EQ(chatty.outcome, Outcome::Refused);
  EXPECT_LT(chatty.why.size(), 1000u);
  EXPECT_NE(chatty.why.find("line1999"), std::string::npos) << chatty.why;
  const Grant missing = command("/no/such/stonith-tool")->acquire("b", 1);
  EXPECT_EQ(missing.outcome, Outcome::Refused);
  EXPECT_NE(missing.why.find("exited 127"), std::string::npos) << missing.why;
  EXPECT_NE(missing.why.find("not found"), std::string::npos) << missing.why;
}

TEST(CommandArbiter, KilledBySignalIsRefused) {
  const Grant g = command("kill -9 $$")->acquire("b", 1);
  EXPECT_EQ(g.outcome, Outcome::Refused);
  EXPECT_NE(g.why.find("signal 9"), std::string::npos) << g.why;
}

TEST(CommandArbiter, HangingCommandIsKilledWithItsChildrenAtTheTimeout) {
  const fs::path marker = fs::temp_directory_path() / ("td_cmd_" + std::to_string(::getpid()) + ".pid");
  fs::remove(marker);
  const auto before = Clock::now();
  // The shell starts a child that would outlive it; the whole group must die.
  const Grant g = command("echo powering off >&2; sleep 60 & echo $! > " + marker.string() + "; wait", 300ms)
                      ->acquire("b", 1);
  const auto took = Clock::now() - before;
  EXPECT_EQ(g.outcome, Outcome::Unreachable);
  EXPECT_EQ(g.why, "fence command did not finish within 300 ms (killed): powering off");
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 5s);
  std::string pid_text;
  std::ifstream(marker) >> pid_text;
  ASSERT_FALSE(pid_text.empty());
  const pid_t sleeper = std::stoi(pid_text);
  // Killed by us and reaped by init (we are not its parent): gone within a moment.
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = ::kill(sleeper, 0) != 0 || !fs::exists("/proc/" + pid_text + "/stat") ||
           [&] {
             std::ifstream stat("/proc/" + pid_text + "/stat");
             std::string pid, comm, state;
             stat >> pid >> comm >> state;
             return state == "Z";
           }();
    if (!gone) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(gone) << "the command's child " << sleeper << " survived the timeout";
  fs::remove(marker);
}

TEST(CommandArbiter, CommandSeesTheVmNodeAndEpoch) {
  const Grant g = command("test \"$TANDEM_VM_ID/$TANDEM_NODE/$TANDEM_EPOCH\" = vm1/b/5 || { echo \"got $TANDEM_VM_ID/$TANDEM_NODE/$TANDEM_EPOCH\" >&2; exit 1; }")
                      ->acquire("b", 4);
  EXPECT_TRUE(g.granted()) << g.why;
}

TEST(CommandArbiter, CommandDoesNotInheritBlockedSignals) {
  // tandemd blocks SIGTERM in its threads; a fence command must still be stoppable by it.
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &term, &old), 0);
  const Grant g = command("kill -TERM $$; sleep 5", 3s)->acquire("b", 1);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  EXPECT_EQ(g.outcome, Outcome::Refused) << g.why;
  EXPECT_NE(g.why.find("signal 15"), std::string::npos) << g.why;
}

TEST(CommandArbiter, EmptyCommandIsRejected) {
  EXPECT_THROW(command(""), std::invalid_argument);
}

}  // namespace
}  // namespace tandem::fencing
