// The secondary's order check of the chunked pre-copy's messages (replicator/precopy.h):
// the sequence the primary sends is accepted; gaps, repeats, rounds out of place, parts
// out of order and anything after the closing message are refused with a reason.
#include <gtest/gtest.h>

#include "replicator/precopy.h"

namespace tandem::replicator {
namespace {

wire::SyncChunk chunk(uint64_t sequence, uint32_t round, uint32_t part, bool last = false) {
  wire::SyncChunk c;
  c.set_sequence(sequence);
  c.set_round(round);
  c.set_part(part);
  c.set_last(last);
  return c;
}

// round 0 in 3 parts, round 1 in 2, round 2 in 1, then the closing message.
std::vector<wire::SyncChunk> good_sync() {
  return {chunk(0, 0, 0), chunk(1, 0, 1), chunk(2, 0, 2), chunk(3, 1, 0), chunk(4, 1, 1),
          chunk(5, 2, 0), chunk(6, 2, 1, true)};
}

// Feeds `messages`; returns the first refusal ("" if all were accepted).
std::string feed(const std::vector<wire::SyncChunk>& messages) {
  SyncSequence s;
  for (const auto& m : messages) {
    if (std::string error = s.accept(m); !error.empty()) return error;
  }
  return "";
}

TEST(SyncSequence, ThePrimarysOrderIsAccepted) {
  SyncSequence s;
  for (const auto& m : good_sync()) {
    EXPECT_FALSE(s.complete());
    EXPECT_EQ(s.accept(m), "");
  }
  EXPECT_TRUE(s.complete());
  EXPECT_EQ(s.next_sequence(), 7u);
}

TEST(SyncSequence, AMissingMessageIsRefused) {
  auto m = good_sync();
  m.erase(m.begin() + 2);
  const std::string e = feed(m);
  EXPECT_NE(e.find("sync message 3 (round 1 part 0) out of order: expected message 2 (messages are missing)"),
            std::string::npos) << e;
}

TEST(SyncSequence, ARepeatIsRefused) {
  auto m = good_sync();
  m.insert(m.begin() + 2, m[1]);
  const std::string e = feed(m);
  EXPECT_NE(e.find("expected message 2 (a repeat or an old message)"), std::string::npos) << e;
}

TEST(SyncSequence, TheSyncOpensWithRoundZeroPartZero) {
  EXPECT_NE(feed({chunk(0, 1, 0)}).find("must open with round 0 part 0"), std::string::npos);
  EXPECT_NE(feed({chunk(0, 0, 1)}).find("must open with round 0 part 0"), std::string::npos);
  EXPECT_NE(feed({chunk(0, 0, 0, true)}).find("must open with round 0 part 0"), std::string::npos);
}

TEST(SyncSequence, RoundsGoUpOneAtATime) {
  EXPECT_NE(feed({chunk(0, 0, 0), chunk(1, 2, 0)}).find("round 2 cannot follow round 0"), std::string::npos);
  EXPECT_NE(feed({chunk(0, 0, 0), chunk(1, 1, 0), chunk(2, 0, 0)}).find("round 0 cannot follow round 1"),
            std::string::npos);
  // The closing message continues the last round; it does not open one.
  EXPECT_NE(feed({chunk(0, 0, 0), chunk(1, 1, 0, true)}).find("round 1 cannot follow round 0"), std::string::npos);
}

TEST(SyncSequence, PartsAreInOrder) {
  EXPECT_NE(feed({chunk(0, 0, 0), chunk(1, 0, 2)}).find("expected part 1 of round 0"), std::string::npos);
  EXPECT_NE(feed({chunk(0, 0, 0), chunk(1, 1, 1)}).find("expected part 0 of round 1"), std::string::npos);
}

TEST(SyncSequence, NothingFollowsTheClosingMessage) {
  auto m = good_sync();
  m.push_back(chunk(7, 2, 2));
  EXPECT_NE(feed(m).find("after the closing message"), std::string::npos);
}

}  // namespace
}  // namespace tandem::replicator
