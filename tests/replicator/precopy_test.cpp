// The secondary's order check of the chunked pre-copy's messages (replicator/precopy.h):
// the sequence the primary sends is accepted; gaps, repeats, rounds out of place, parts
// out of order and anything after the closing message are refused with a reason.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

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
    if (auto accepted = s.accept(m); !accepted) {
      EXPECT_EQ(accepted.error().kind, ErrorKind::Invalid);
      return accepted.error().message;
    }
  }
  return "";
}

TEST(SyncSequence, ThePrimarysOrderIsAccepted) {
  SyncSequence s;
  for (const auto& m : good_sync()) {
    EXPECT_FALSE(s.complete());
    EXPECT_TRUE(s.accept(m).ok());
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

// The primary's encoder thread (PartPipeline): batches copied on the VM thread come back
// from a bounded pool, are encoded in order into parts that are handed to `send`, and a
// round reports done once its last part went out.
namespace tandem::replicator::pipeline_test {

// A batch of `pages` incompressible data pages from `first`, as RoundCopier makes.
void fill(checkpoint::RecordBatch& b, uint64_t first, uint64_t pages) {
  b.clear();
  b.mem_bytes = uint64_t{64} << 20;
  for (uint64_t p = first; p < first + pages; ++p) {
    b.records.push_back({checkpoint::RecordBatch::Type::Page, false, p, 4096, b.bytes.size()});
    std::mt19937_64 rng(p);
    for (int i = 0; i < 4096 / 8; ++i) {
      const uint64_t word = rng();
      b.bytes.append(reinterpret_cast<const char*>(&word), 8);
    }
    ++b.counts.pages;
  }
}

TEST(PartPipeline, EncodesBatchesInOrderFromABoundedPool) {
  std::mutex mutex;
  std::vector<std::string> parts;
  PartPipeline pipeline(64 << 10, 2, 16 << 10, [&](std::string&& part) {
    std::lock_guard lock(mutex);
    parts.push_back(std::move(part));
  });
  checkpoint::Stats stats;
  for (uint64_t round = 0; round < 2; ++round) {
    uint64_t next = 0;
    while (next < 100) {
      checkpoint::RecordBatch* b = pipeline.free_batch();
      if (!b) {
        pipeline.wait(std::chrono::milliseconds(10));
        continue;
      }
      fill(*b, next, 4);
      next += 4;
      pipeline.submit(b);
    }
    pipeline.end_round();
    while (!pipeline.round_done(stats)) pipeline.wait(std::chrono::milliseconds(10));
    EXPECT_EQ(stats.pages, 100u);
    EXPECT_EQ(stats.raw_bytes, 100u * 4096);
  }
  // Two batches at most: both were handed out, none is free until one comes back.
  checkpoint::RecordBatch* a = pipeline.free_batch();
  checkpoint::RecordBatch* b = pipeline.free_batch();
  EXPECT_NE(a, nullptr);
  EXPECT_NE(b, nullptr);
  EXPECT_EQ(pipeline.free_batch(), nullptr);

  std::lock_guard lock(mutex);
  ASSERT_GE(parts.size(), 2 * 6u);  // 400 KiB per round, parts of about 64 KiB
  uint64_t records = 0;
  for (const std::string& part : parts) records += checkpoint::inspect(part).records;
  EXPECT_EQ(records, 200u);
}

TEST(PartPipeline, ASendThatThrowsEndsTheRoundWithItsError) {
  struct LinkDown : std::runtime_error {
    LinkDown() : std::runtime_error("link down") {}
  };
  int sent = 0;
  PartPipeline pipeline(8 << 10, 2, 16 << 10, [&](std::string&&) {
    if (++sent == 2) throw LinkDown{};
  });
  checkpoint::Stats stats;
  auto drive = [&] {
    for (uint64_t next = 0; next < 40;) {
      (void)pipeline.round_done(stats);  // rethrows the sender's error
      if (checkpoint::RecordBatch* b = pipeline.free_batch()) {
        fill(*b, next, 4);
        next += 4;
        pipeline.submit(b);
      } else {
        pipeline.wait(std::chrono::milliseconds(10));
      }
    }
    pipeline.end_round();
    while (!pipeline.round_done(stats)) pipeline.wait(std::chrono::milliseconds(10));
  };
  EXPECT_THROW(drive(), LinkDown);
  EXPECT_EQ(sent, 2);  // nothing is encoded or sent after the failure
}

TEST(PartPipeline, StopsWhileASendWaitsForThePeer) {
  std::atomic<bool> waiting{false};
  std::atomic<PartPipeline*> self{nullptr};
  auto pipeline = std::make_unique<PartPipeline>(8 << 10, 1, 16 << 10, [&](std::string&&) {
    waiting = true;
    while (!self.load()->stopping()) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // a peer that never acks
    throw std::runtime_error("stopped");
  });
  self = pipeline.get();
  checkpoint::RecordBatch* b = pipeline->free_batch();
  ASSERT_NE(b, nullptr);
  fill(*b, 0, 4);
  pipeline->submit(b);
  pipeline->end_round();
  while (!waiting) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  pipeline.reset();  // returns: the send saw stopping()
  SUCCEED();
}

}  // namespace tandem::replicator::pipeline_test
