// fencing::AckFreshness and the release decision: acknowledged output may leave without a
// valid lease only while the secondary provably cannot be live yet (its ack names something
// the primary sent less than the window ago), only while armed (PROTECTED on this link), and
// never for output the secondary has not acknowledged.
#include "fencing/ack_freshness.h"

#include <gtest/gtest.h>

namespace {

using namespace std::chrono_literals;
using tandem::fencing::AckFreshness;
using tandem::fencing::may_release_output;
using Clock = AckFreshness::Clock;

constexpr auto kHoldoff = 300ms;

TEST(AckFreshness, WindowIsTheHoldoffLessClockAndSchedulingMargins) {
  // 0.95 * 300 - 300 / 4 = 285 - 75 = 210 ms.
  EXPECT_EQ(AckFreshness::window(kHoldoff), std::chrono::duration_cast<Clock::duration>(210ms));
  EXPECT_LT(AckFreshness::window(kHoldoff), Clock::duration(kHoldoff));
  EXPECT_EQ(AckFreshness::window(0ms), Clock::duration(0));
}

TEST(AckFreshness, FreshAckReleasesAcknowledgedOutputWithoutTheLease) {
  AckFreshness acks;
  acks.arm();
  const auto t0 = Clock::now();
  acks.batch_sent(7, t0);
  acks.batch_acknowledged(7, kHoldoff);
  EXPECT_TRUE(acks.fresh(t0 + 1ms));
  EXPECT_TRUE(may_release_output(/*lease_valid=*/false, /*acknowledged=*/true, acks, t0 + 1ms));
  EXPECT_TRUE(may_release_output(false, true, acks, t0 + 209ms));
  // Counted from when the batch was *sent*, however late the ack arrives.
  EXPECT_FALSE(may_release_output(false, true, acks, t0 + 210ms));
  EXPECT_GE(acks.ms_left(t0 + 10ms), 199);
  EXPECT_EQ(acks.ms_left(t0 + 211ms), -1);
}

TEST(AckFreshness, StaleAckReleasesNothing) {
  // A primary thawed after a freeze reads acks that queued up meanwhile: they name batches it
  // sent before the freeze, so they are stale on arrival.
  AckFreshness acks;
  acks.arm();
  const auto sent = Clock::now() - 5s;
  acks.batch_sent(1, sent);
  acks.batch_acknowledged(1, kHoldoff);
  EXPECT_FALSE(acks.fresh());
  EXPECT_FALSE(may_release_output(false, true, acks));
  EXPECT_EQ(acks.ms_left(), -1);
}

TEST(AckFreshness, OutputNotAcknowledgedNeedsTheLease) {
  AckFreshness acks;
  acks.arm();
  acks.batch_sent(3);
  acks.batch_acknowledged(3, kHoldoff);
  ASSERT_TRUE(acks.fresh());
  // STANDALONE (the gate is open, nothing is acknowledged): the lease alone decides.
  EXPECT_FALSE(may_release_output(/*lease_valid=*/false, /*acknowledged=*/false, acks));
  EXPECT_TRUE(may_release_output(/*lease_valid=*/true, /*acknowledged=*/false, acks));
}

TEST(AckFreshness, ValidLeaseReleasesWithoutAnyAck) {
  AckFreshness acks;  // never armed, nothing sent
  EXPECT_TRUE(may_release_output(true, true, acks));
  EXPECT_TRUE(may_release_output(true, false, acks));
  EXPECT_FALSE(may_release_output(false, true, acks));
}

TEST(AckFreshness, DisarmedOrResetReleasesNothingOnAcks) {
  AckFreshness acks;
  acks.batch_sent(1);
  acks.batch_acknowledged(1, kHoldoff);
  EXPECT_FALSE(acks.fresh()) << "not armed yet (not PROTECTED)";
  acks.arm();
  EXPECT_TRUE(acks.fresh());
  acks.disarm();  // link lost, fenced, handover
  EXPECT_FALSE(acks.fresh());
  EXPECT_FALSE(may_release_output(false, true, acks));
  acks.arm();
  acks.reset();  // a new link
  EXPECT_FALSE(acks.armed());
  acks.arm();
  EXPECT_FALSE(acks.fresh()) << "freshness from the earlier link must not survive a reset";
}

TEST(AckFreshness, UnknownTokensGiveNothing) {
  AckFreshness acks;
  acks.arm();
  acks.batch_sent(10);
  acks.batch_acknowledged(11, kHoldoff);  // never sent (another link, or made up)
  EXPECT_FALSE(acks.fresh());
  acks.heartbeat_echoed(12345);
  EXPECT_FALSE(acks.fresh());
}

TEST(AckFreshness, NoHoldoffMeansNoPromise) {
  // An older secondary sends no holdoff: it makes no promise about when it goes live.
  AckFreshness acks;
  acks.arm();
  acks.batch_sent(1);
  acks.batch_acknowledged(1, 0ms);
  EXPECT_FALSE(acks.fresh());
  EXPECT_FALSE(may_release_output(false, true, acks));
}

TEST(AckFreshness, HeartbeatEchoRefreshesWithTheLastAcksHoldoff) {
  AckFreshness acks;
  acks.arm();
  const auto t0 = Clock::now() - 1s;
  acks.batch_sent(1, t0);
  acks.batch_acknowledged(1, kHoldoff);
  EXPECT_FALSE(acks.fresh());
  const auto hb = Clock::now();
  acks.heartbeat_sent(42, hb);
  acks.heartbeat_echoed(42);
  EXPECT_TRUE(acks.fresh(hb + 100ms));
  EXPECT_FALSE(acks.fresh(hb + 210ms));
}

TEST(AckFreshness, FreshnessNeverMovesBackAndOldTokensAreForgotten) {
  AckFreshness acks;
  acks.arm();
  const auto t0 = Clock::now();
  acks.batch_sent(1, t0);
  acks.batch_sent(2, t0 + 50ms);
  acks.batch_acknowledged(2, kHoldoff);
  acks.batch_acknowledged(1, kHoldoff);  // an older ack arriving late: no effect
  EXPECT_TRUE(acks.fresh(t0 + 250ms));
  // Acks are cumulative: batch 1 was dropped when 2 was acknowledged.
  AckFreshness other;
  other.arm();
  other.batch_sent(1, t0);
  other.batch_sent(2, t0 - 10s);
  other.batch_acknowledged(2, kHoldoff);
  other.batch_acknowledged(1, kHoldoff);
  EXPECT_FALSE(other.fresh(t0 + 1ms));
}

TEST(AckFreshness, TheTableIsBounded) {
  AckFreshness acks;
  acks.arm();
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < AckFreshness::kMaxRemembered + 10; ++i) acks.batch_sent(i, t0);
  acks.batch_acknowledged(0, kHoldoff);  // forgotten: nothing
  EXPECT_FALSE(acks.fresh(t0));
  acks.batch_acknowledged(AckFreshness::kMaxRemembered + 9, kHoldoff);
  EXPECT_TRUE(acks.fresh(t0));
}

}  // namespace
