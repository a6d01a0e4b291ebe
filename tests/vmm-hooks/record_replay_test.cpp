// Record a guest with the Recorder, replay the log with the Replayer in a fresh machine:
// the same console output, the same final state hash, and a perturbed log is caught at the
// first audit after the change.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>

#include "scripted_console.h"
#include "vmm-hooks/event_log.h"
#include "vmm-hooks/recorder.h"
#include "vmm-hooks/replayer.h"
#include "vmm/machine.h"

namespace tandem::hooks {
namespace {

using testing::ScriptedConsole;

std::string guest(const std::string& name) { return std::string(TANDEM_GUEST_DIR) + "/" + name + ".elf"; }

struct Recorded {
  std::string output;
  uint64_t final_hash = 0;
  vmm::RunResult result;
  uint64_t records = 0;
};

class RecordReplayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    log_path_ = (std::filesystem::temp_directory_path() /
                 ("tandem_rr_" + std::to_string(::getpid()) + "_" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".log"))
                    .string();
  }
  void TearDown() override { std::filesystem::remove(log_path_); }

  Recorded record(const std::string& elf, const std::string& input, RecorderOptions options) {
    ScriptedConsole console(input);
    Recorder recorder(console, options);
    vmm::Machine machine({}, recorder);
    machine.load(elf);
    FileBatchSink sink(log_path_, recorder.make_header(machine, elf));
    recorder.begin(machine, sink);
    const vmm::RunResult result = machine.run_until(500'000'000);
    recorder.finish(machine, result);
    return {console.output, machine.state_hash(), result, recorder.records_written()};
  }

  struct Replayed {
    std::string output;
    uint64_t final_hash = 0;
    std::optional<Divergence> divergence;
    std::optional<ReplayEnd> end;
    uint64_t audits = 0;
  };

  Replayed replay(const std::string& elf) {
    LogFileReader reader(log_path_);
    FileBatchSource source(reader);
    ScriptedConsole console;
    Replayer replayer(source, &console);
    vmm::Machine machine({}, replayer);
    machine.load(elf);
    EXPECT_EQ(Replayer::check_header(reader.header(), machine), "");
    replayer.run(machine, 500'000'000);
    return {console.output, machine.state_hash(), replayer.divergence(), replayer.end(),
            replayer.audits_checked()};
  }

  // Rewrites the log, changing the value of the first record of `kind` by +1.
  void perturb_first(log::RecordKind kind, uint64_t* at_icount) {
    std::vector<log::LogBatch> batches;
    log::LogHeader header;
    {
      LogFileReader reader(log_path_);
      header = reader.header();
      while (auto b = reader.next()) batches.push_back(*b);
    }
    bool done = false;
    for (auto& b : batches) {
      for (auto& r : *b.mutable_records()) {
        if (!done && r.kind() == kind) {
          r.set_value(r.value() + 1);
          *at_icount = r.icount();
          done = true;
        }
      }
    }
    ASSERT_TRUE(done) << "no record of kind " << log::RecordKind_Name(kind);
    LogFileWriter writer(log_path_, header);
    for (const auto& b : batches) writer.append(b);
  }

  std::string log_path_;
};

TEST_F(RecordReplayTest, TimerGuestWithIdleSkipsReplaysBitForBit) {
  RecorderOptions options;
  options.time = GuestTime::Virtual;
  options.audit_interval = 20'000;
  const Recorded rec = record(guest("timer"), "", options);
  ASSERT_EQ(rec.result.exit, vmm::Exit::GuestPass);
  const Replayed rep = replay(guest("timer"));
  ASSERT_FALSE(rep.divergence) << rep.divergence->what << " at " << rep.divergence->icount;
  ASSERT_TRUE(rep.end);
  EXPECT_EQ(rep.end->exit, vmm::Exit::GuestPass);
  EXPECT_EQ(rep.output, rec.output);
  EXPECT_EQ(rep.final_hash, rec.final_hash);
  EXPECT_GT(rep.audits, 1u);
}

TEST_F(RecordReplayTest, FloatingPointGuestReplaysBitForBitAndIsDeterministic) {
  // fpdiff_1: thousands of F/D instructions over edge values in every rounding mode; audits
  // compare the state hash (f registers and fcsr included) during the replay.
  RecorderOptions options;
  options.time = GuestTime::Virtual;
  options.audit_interval = 5'000;
  const Recorded rec = record(guest("fpdiff_1"), "", options);
  ASSERT_EQ(rec.result.exit, vmm::Exit::GuestPass);
  const Replayed rep = replay(guest("fpdiff_1"));
  ASSERT_FALSE(rep.divergence) << rep.divergence->what << " at " << rep.divergence->icount;
  ASSERT_TRUE(rep.end);
  EXPECT_EQ(rep.output, rec.output);
  EXPECT_EQ(rep.final_hash, rec.final_hash);
  EXPECT_GT(rep.audits, 3u);
  // The same guest recorded again ends in the same state.
  const Recorded again = record(guest("fpdiff_1"), "", options);
  EXPECT_EQ(again.final_hash, rec.final_hash);
  EXPECT_EQ(again.output, rec.output);
}

TEST_F(RecordReplayTest, ConsoleInputGuestReplaysWithoutItsInput) {
  RecorderOptions options;
  options.time = GuestTime::Virtual;
  options.audit_interval = 50'000;
  const Recorded rec = record(guest("plic_uart"), "ping\n", options);
  ASSERT_EQ(rec.result.exit, vmm::Exit::GuestPass) << rec.output;
  const Replayed rep = replay(guest("plic_uart"));  // the replay console has no input at all
  ASSERT_FALSE(rep.divergence) << rep.divergence->what;
  EXPECT_EQ(rep.output, rec.output);
  EXPECT_EQ(rep.final_hash, rec.final_hash);
}

TEST_F(RecordReplayTest, MixGuestWithTimerEntropyAndInputReplays) {
  RecorderOptions options;
  options.time = GuestTime::Virtual;
  options.audit_interval = 100'000;
  const Recorded rec = record(guest("mix"), "first line\nsecond\nquit\n", options);
  ASSERT_EQ(rec.result.exit, vmm::Exit::GuestPass) << rec.output;
  ASSERT_NE(rec.output.find("rng: virtio-rng"), std::string::npos) << rec.output;
  const Replayed rep = replay(guest("mix"));
  ASSERT_FALSE(rep.divergence) << rep.divergence->what << " at " << rep.divergence->icount;
  EXPECT_EQ(rep.output, rec.output);  // including the random bytes it printed
  EXPECT_EQ(rep.final_hash, rec.final_hash);
}

TEST_F(RecordReplayTest, TwoRecordingsOfTheMixGuestDrawDifferentEntropy) {
  RecorderOptions options;
  options.time = GuestTime::Virtual;
  const Recorded a = record(guest("mix"), "quit\n", options);
  const Recorded b = record(guest("mix"), "quit\n", options);
  // The entropy really comes from the host (so replay has something to reproduce).
  EXPECT_NE(a.output, b.output);
}

TEST_F(RecordReplayTest, WallTimeRecordingWithTimeAdjustmentsReplays) {
  RecorderOptions options;
  options.time = GuestTime::Wall;
  options.max_time_lag = std::chrono::microseconds(100);  // force TIME_ADJUST records
  options.poll_interval = 10'000;
  options.audit_interval = 100'000;
  const Recorded rec = record(guest("timer"), "", options);
  ASSERT_EQ(rec.result.exit, vmm::Exit::GuestPass);
  const Replayed rep = replay(guest("timer"));
  ASSERT_FALSE(rep.divergence) << rep.divergence->what << " at " << rep.divergence->icount;
  EXPECT_EQ(rep.output, rec.output);
  EXPECT_EQ(rep.final_hash, rec.final_hash);
}

TEST_F(RecordReplayTest, IdleGuestWithA1kHzTimerLogsOnlyTimeAndAuditRecords) {
  RecorderOptions options;
  options.time = GuestTime::Wall;  // real waits: 200 timer periods of 1 ms
  const Recorded rec = record(guest("idle1k_short"), "", options);
  ASSERT_EQ(rec.result.exit, vmm::Exit::GuestPass) << rec.output;
  LogFileReader reader(log_path_);
  std::map<int, uint64_t> kinds;
  while (auto b = reader.next()) {
    for (const auto& r : b->records()) ++kinds[r.kind()];
  }
  for (const auto& [kind, n] : kinds) {
    EXPECT_TRUE(kind == log::IDLE_SKIP || kind == log::TIME_ADJUST || kind == log::AUDIT ||
                kind == log::OUTPUT_DIGEST || kind == log::END)
        << n << " records of kind " << log::RecordKind_Name(static_cast<log::RecordKind>(kind));
  }
  // One idle skip per timer period (the guest sleeps between its 200 interrupts), not per
  // instruction or per poll.
  EXPECT_GE(kinds[log::IDLE_SKIP], 200u);
  EXPECT_LE(kinds[log::IDLE_SKIP] + kinds[log::TIME_ADJUST], 2 * 200u + 50u);
  // And it replays.
  const Replayed rep = replay(guest("idle1k_short"));
  ASSERT_FALSE(rep.divergence) << rep.divergence->what << " at " << rep.divergence->icount;
  EXPECT_EQ(rep.final_hash, rec.final_hash);
}

TEST_F(RecordReplayTest, ChangedIdleSkipDivergesAtTheNextAudit) {
  RecorderOptions options;
  options.time = GuestTime::Virtual;
  options.audit_interval = 5'000;
  record(guest("timer"), "", options);
  uint64_t changed_at = 0;
  perturb_first(log::IDLE_SKIP, &changed_at);
  const Replayed rep = replay(guest("timer"));
  ASSERT_TRUE(rep.divergence);
  EXPECT_GE(rep.divergence->icount, changed_at);
  // The first audit after the change: audits are on a 5000-instruction grid (or the END).
  EXPECT_LE(rep.divergence->icount, (changed_at / 5'000 + 1) * 5'000);
  EXPECT_NE(rep.divergence->expected, rep.divergence->actual);
}

TEST_F(RecordReplayTest, ReplayOfTheWrongGuestIsRefusedByTheHeader) {
  RecorderOptions options;
  options.time = GuestTime::Virtual;
  record(guest("hello"), "", options);
  LogFileReader reader(log_path_);
  FileBatchSource source(reader);
  Replayer replayer(source, nullptr);
  vmm::Machine machine({}, replayer);
  machine.load(guest("timer"));
  EXPECT_NE(Replayer::check_header(reader.header(), machine), "");
}

}  // namespace
}  // namespace tandem::hooks
