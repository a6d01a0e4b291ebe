// StreamBatchSource: the secondary's log stream refuses a batch out of sequence.
// OutputTail: what a promoted secondary re-emits, per output channel.
// (The output gate's tests are in output_gate_test.cpp.)
#include "replicator/pair_io.h"

#include <gtest/gtest.h>

#include <string>

namespace {

using namespace tandem;
using namespace tandem::replicator;

log::LogBatch batch(uint64_t sequence, uint64_t complete_to) {
  log::LogBatch b;
  b.set_sequence(sequence);
  b.set_complete_to_icount(complete_to);
  log::Record* r = b.add_records();
  r->set_icount(complete_to);
  r->set_kind(log::IDLE_SKIP);
  return b;
}

TEST(StreamBatchSource, BatchesInSequenceAreQueuedInOrder) {
  StreamBatchSource s;
  for (uint64_t i = 0; i < 3; ++i) EXPECT_TRUE(s.push(batch(i, 100 * (i + 1))));
  EXPECT_EQ(s.gap(), "");
  EXPECT_EQ(s.complete_to(), 300u);
  EXPECT_EQ(s.last_sequence(), 2u);
  for (uint64_t i = 0; i < 3; ++i) {
    const auto b = s.next_batch();
    ASSERT_TRUE(b);
    EXPECT_EQ(b->sequence(), i);
  }
  EXPECT_FALSE(s.next_batch());
}

TEST(StreamBatchSource, AMissingBatchIsRefusedAndBreaksTheStream) {
  // Batch 1 never arrived (issue 6: batches that beat the replica were dropped): batch 2
  // must not be replayed as if it followed batch 0, and nothing after it either.
  StreamBatchSource s;
  EXPECT_TRUE(s.push(batch(0, 100)));
  EXPECT_FALSE(s.push(batch(2, 300)));
  EXPECT_EQ(s.gap(), "log batch 1 missing: batch 2 arrived");
  EXPECT_FALSE(s.push(batch(1, 200)));  // too late: the replica already cannot follow
  EXPECT_EQ(s.complete_to(), 100u);
  EXPECT_EQ(s.queued(), 1u);
}

TEST(StreamBatchSource, TheFirstBatchMustBeBatchZero) {
  StreamBatchSource s;
  EXPECT_FALSE(s.push(batch(1, 100)));
  EXPECT_EQ(s.gap(), "log batch 0 missing: batch 1 arrived");
  EXPECT_EQ(s.queued(), 0u);
}

TEST(OutputTail, ConsoleBytesAfterTheReleaseMarkerAreUnconfirmed) {
  OutputTail tail;
  const std::string a = "line 1\n", b = "line 2\n";
  tail.output(vmm::OutputChannel::Console, 10, {reinterpret_cast<const uint8_t*>(a.data()), a.size()});
  tail.output(vmm::OutputChannel::Console, 20, {reinterpret_cast<const uint8_t*>(b.data()), b.size()});
  EXPECT_EQ(tail.produced(), a.size() + b.size());
  EXPECT_EQ(tail.unconfirmed(3), "e 1\nline 2\n");
  tail.trim_released(10);  // part-way through the second line
  EXPECT_EQ(tail.unconfirmed(10), "e 2\n");
  EXPECT_EQ(tail.unconfirmed(8), "e 2\n");  // trimmed bytes cannot come back
  EXPECT_EQ(tail.unconfirmed(tail.produced()), "");
}

TEST(OutputTail, NetworkFramesAreReEmittedWholeAndApartFromTheConsole) {
  OutputTail tail;
  const std::string f1(60, 'a'), f2(90, 'b'), text = "hi\n";
  tail.output(vmm::OutputChannel::Net, 5, {reinterpret_cast<const uint8_t*>(f1.data()), f1.size()});
  tail.output(vmm::OutputChannel::Console, 6, {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  tail.output(vmm::OutputChannel::Net, 7, {reinterpret_cast<const uint8_t*>(f2.data()), f2.size()});
  EXPECT_EQ(tail.produced(vmm::OutputChannel::Net), 150u);
  EXPECT_EQ(tail.unconfirmed(vmm::OutputChannel::Net, 0), (std::vector<std::string>{f1, f2}));
  tail.trim_released(vmm::OutputChannel::Net, 60);
  EXPECT_EQ(tail.unconfirmed(vmm::OutputChannel::Net, 60), (std::vector<std::string>{f2}));
  EXPECT_EQ(tail.unconfirmed(0), "hi\n");  // the console's own count
  EXPECT_TRUE(tail.unconfirmed(vmm::OutputChannel::Net, 150).empty());
}

}  // namespace
