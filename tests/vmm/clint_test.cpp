// CLINT: mtime derived from icount, mtimecmp compare (MTIP as a level), msip, the deadline
// the run loop stops at, and save/restore.
#include <gtest/gtest.h>

#include "tests/vmm/device_test_support.h"
#include "vmm/devices/clint.h"

namespace tandem::vmm {
namespace {

using testing::LevelRecorder;

constexpr unsigned kMsipLine = 3, kMtipLine = 7;

class ClintTest : public ::testing::Test {
 protected:
  ClintTest()
      : clint(clock, [this] { return icount; }, IrqLine{&lines, kMsipLine}, IrqLine{&lines, kMtipLine},
              [this] { ++deadline_changes; }) {}
  uint64_t rd(uint64_t off, unsigned size = 8) {
    uint64_t v = 0;
    EXPECT_TRUE(clint.read(off, size, v));
    return v;
  }
  void wr(uint64_t off, uint64_t v, unsigned size = 8) { EXPECT_TRUE(clint.write(off, size, v)); }

  VirtualClock clock;
  uint64_t icount = 0;
  int deadline_changes = 0;
  LevelRecorder lines;
  Clint clint;
};

TEST_F(ClintTest, MtimeFollowsIcountAndClockOffset) {
  icount = 12345;
  EXPECT_EQ(rd(Clint::kMtime), 123u);
  clock.advance(1000);
  EXPECT_EQ(rd(Clint::kMtime), 1123u);
  EXPECT_EQ(rd(Clint::kMtime, 4), 1123u);  // low half
  EXPECT_EQ(rd(Clint::kMtime + 4, 4), 0u);  // high half
}

TEST_F(ClintTest, WritesToMtimeAreIgnored) {
  icount = 500;
  wr(Clint::kMtime, 999999);
  EXPECT_EQ(rd(Clint::kMtime), 5u);
}

TEST_F(ClintTest, TimerInterruptIsLevelOfMtimeAgainstMtimecmp) {
  wr(Clint::kMtimecmp, 50);
  EXPECT_EQ(deadline_changes, 1);
  EXPECT_FALSE(lines.at(kMtipLine));
  EXPECT_EQ(clint.timer_deadline_icount(0), 5000u);
  icount = 4999;
  clint.update_timer(icount);
  EXPECT_FALSE(lines.at(kMtipLine));
  icount = 5000;
  clint.update_timer(icount);
  EXPECT_TRUE(lines.at(kMtipLine));
  EXPECT_EQ(clint.timer_deadline_icount(icount), UINT64_MAX);  // already fired
  // Pushing mtimecmp forward drops MTIP at once.
  wr(Clint::kMtimecmp, 100);
  EXPECT_FALSE(lines.at(kMtipLine));
  EXPECT_EQ(clint.timer_deadline_icount(icount), 10000u);
}

TEST_F(ClintTest, MtimecmpHalvesCanBeWrittenSeparately) {
  wr(Clint::kMtimecmp, 0x1234, 4);
  wr(Clint::kMtimecmp + 4, 0, 4);
  EXPECT_EQ(clint.mtimecmp(), 0x1234u);
  EXPECT_EQ(rd(Clint::kMtimecmp), 0x1234u);
}

TEST_F(ClintTest, NoTimerAtResetAndHugeDeadlineNeverFires) {
  EXPECT_EQ(clint.timer_deadline_icount(0), UINT64_MAX);
  wr(Clint::kMtimecmp, UINT64_MAX - 1);
  EXPECT_EQ(clint.timer_deadline_icount(0), UINT64_MAX);
  EXPECT_FALSE(lines.at(kMtipLine));
}

TEST_F(ClintTest, DeadlineAccountsForClockOffset) {
  clock.advance(40);
  wr(Clint::kMtimecmp, 50);
  EXPECT_EQ(clint.timer_deadline_icount(0), 1000u);  // 10 more ticks
}

TEST_F(ClintTest, MsipDrivesSoftwareInterrupt) {
  wr(Clint::kMsip, 1, 4);
  EXPECT_TRUE(lines.at(kMsipLine));
  EXPECT_EQ(rd(Clint::kMsip, 4), 1u);
  wr(Clint::kMsip, 0, 4);
  EXPECT_FALSE(lines.at(kMsipLine));
}

TEST_F(ClintTest, SaveRestoreKeepsMtimecmpAndMsip) {
  wr(Clint::kMtimecmp, 777);
  wr(Clint::kMsip, 1, 4);
  const auto bytes = testing::save_bytes(clint);
  VirtualClock clock2;
  LevelRecorder lines2;
  Clint copy(clock2, [] { return uint64_t{0}; }, IrqLine{&lines2, kMsipLine}, IrqLine{&lines2, kMtipLine});
  testing::restore_bytes(copy, bytes);
  EXPECT_EQ(copy.mtimecmp(), 777u);
  copy.update_timer(0);
  EXPECT_TRUE(lines2.at(kMsipLine));
  EXPECT_EQ(testing::save_bytes(copy), bytes);
}

}  // namespace
}  // namespace tandem::vmm
