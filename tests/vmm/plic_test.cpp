// PLIC: priorities, enables, thresholds, claim/complete with level-triggered gateways,
// context outputs, register protocol and save/restore.
#include <gtest/gtest.h>

#include "tests/vmm/device_test_support.h"
#include "vmm/devices/plic.h"

namespace tandem::vmm {
namespace {

using testing::LevelRecorder;

constexpr unsigned kMeip = 11, kSeip = 9;

class PlicTest : public ::testing::Test {
 protected:
  PlicTest() : plic({IrqLine{&hart, kMeip}, IrqLine{&hart, kSeip}}) {}
  uint32_t rd(uint64_t off) {
    uint64_t v = 0;
    EXPECT_TRUE(plic.read(off, 4, v));
    return static_cast<uint32_t>(v);
  }
  void wr(uint64_t off, uint32_t v) { EXPECT_TRUE(plic.write(off, 4, v)); }
  void set_priority(unsigned src, uint32_t p) { wr(Plic::kPriorityBase + 4 * src, p); }
  void enable(unsigned ctx, unsigned src) {
    const uint64_t off = Plic::kEnableBase + Plic::kEnableStride * ctx + 4 * (src / 32);
    wr(off, rd(off) | (1u << (src % 32)));
  }
  void set_threshold(unsigned ctx, uint32_t t) { wr(Plic::kContextBase + Plic::kContextStride * ctx, t); }
  uint32_t claim(unsigned ctx) { return rd(Plic::kContextBase + Plic::kContextStride * ctx + 4); }
  void complete(unsigned ctx, uint32_t src) { wr(Plic::kContextBase + Plic::kContextStride * ctx + 4, src); }

  LevelRecorder hart;
  Plic plic;
};

TEST_F(PlicTest, EnabledSourceWithPriorityRaisesContextOutput) {
  set_priority(10, 1);
  plic.set_irq(10, true);
  EXPECT_FALSE(hart.at(kMeip));  // not enabled yet
  EXPECT_EQ(rd(Plic::kPendingBase) & (1u << 10), 1u << 10);
  enable(0, 10);
  EXPECT_TRUE(hart.at(kMeip));
  EXPECT_FALSE(hart.at(kSeip));  // context 1 has no enable
}

TEST_F(PlicTest, PriorityZeroNeverInterrupts) {
  enable(0, 5);
  plic.set_irq(5, true);
  EXPECT_FALSE(hart.at(kMeip));
  EXPECT_EQ(claim(0), 0u);
}

TEST_F(PlicTest, ClaimReturnsHighestPriorityThenLowestId) {
  for (unsigned s : {3u, 4u, 7u}) {
    enable(0, s);
    plic.set_irq(s, true);
  }
  set_priority(3, 2);
  set_priority(4, 5);
  set_priority(7, 5);
  EXPECT_EQ(claim(0), 4u);  // priority 5, lower id than 7
  EXPECT_EQ(claim(0), 7u);
  EXPECT_EQ(claim(0), 3u);
  EXPECT_EQ(claim(0), 0u);
  EXPECT_FALSE(hart.at(kMeip));  // everything is in service
}

TEST_F(PlicTest, ThresholdMasksLowerOrEqualPriorities) {
  set_priority(2, 3);
  enable(0, 2);
  plic.set_irq(2, true);
  set_threshold(0, 3);
  EXPECT_FALSE(hart.at(kMeip));
  EXPECT_EQ(claim(0), 0u);
  set_threshold(0, 2);
  EXPECT_TRUE(hart.at(kMeip));
  EXPECT_EQ(rd(Plic::kContextBase), 2u);
}

TEST_F(PlicTest, CompleteRependsALineThatIsStillHigh) {
  set_priority(10, 1);
  enable(0, 10);
  plic.set_irq(10, true);
  EXPECT_EQ(claim(0), 10u);
  EXPECT_FALSE(hart.at(kMeip));
  // While claimed, the gateway holds further requests.
  plic.set_irq(10, true);
  EXPECT_FALSE(hart.at(kMeip));
  complete(0, 10);
  EXPECT_TRUE(hart.at(kMeip));  // still high: pending again
  EXPECT_EQ(claim(0), 10u);
  plic.set_irq(10, false);
  complete(0, 10);
  EXPECT_FALSE(hart.at(kMeip));
  EXPECT_EQ(claim(0), 0u);
}

TEST_F(PlicTest, LineDroppingBeforeClaimWithdrawsRequest) {
  set_priority(1, 1);
  enable(0, 1);
  plic.set_irq(1, true);
  EXPECT_TRUE(hart.at(kMeip));
  plic.set_irq(1, false);
  EXPECT_FALSE(hart.at(kMeip));
}

TEST_F(PlicTest, SupervisorContextDrivesSeip) {
  set_priority(8, 1);
  enable(1, 8);
  plic.set_irq(8, true);
  EXPECT_TRUE(hart.at(kSeip));
  EXPECT_FALSE(hart.at(kMeip));
  EXPECT_EQ(claim(1), 8u);
  EXPECT_FALSE(hart.at(kSeip));
}

TEST_F(PlicTest, RegisterProtocolBoundsAndWidths) {
  set_priority(1, 0xff);
  EXPECT_EQ(rd(Plic::kPriorityBase + 4), Plic::kMaxPriority);  // WARL: 3 bits
  uint64_t v;
  EXPECT_FALSE(plic.read(0, 8, v));  // 32-bit device
  EXPECT_FALSE(plic.write(2, 4, 0));
  EXPECT_EQ(rd(0x5ffffc), 0u);   // inside the window, no register: zero
  wr(Plic::kPendingBase, 0xffffffff);  // pending is read-only
  EXPECT_EQ(rd(Plic::kPendingBase), 0u);
  plic.set_irq(0, true);  // source 0 does not exist
  plic.set_irq(5000, true);
  EXPECT_EQ(rd(Plic::kPendingBase), 0u);
  complete(0, 4000);  // nonsense completion is ignored
}

TEST_F(PlicTest, SaveRestoreKeepsClaimsAndRedrivesOutputs) {
  set_priority(10, 1);
  set_priority(11, 1);
  enable(0, 10);
  enable(0, 11);
  plic.set_irq(10, true);
  plic.set_irq(11, true);
  EXPECT_EQ(claim(0), 10u);
  const auto bytes = testing::save_bytes(plic);

  LevelRecorder hart2;
  Plic copy({IrqLine{&hart2, kMeip}, IrqLine{&hart2, kSeip}});
  testing::restore_bytes(copy, bytes);
  EXPECT_TRUE(hart2.at(kMeip));  // source 11 is still pending
  uint64_t v;
  copy.read(Plic::kContextBase + 4, 4, v);
  EXPECT_EQ(v, 11u);

  auto corrupt = bytes;
  corrupt[4 + 4] = 99;  // priority of source 1
  Plic other({IrqLine{&hart2, kMeip}, IrqLine{&hart2, kSeip}});
  EXPECT_THROW(testing::restore_bytes(other, corrupt), StateError);
}

}  // namespace
}  // namespace tandem::vmm
