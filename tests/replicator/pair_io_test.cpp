// GatedConsole, the output rule with self-fencing: output leaves only when the secondary
// has acknowledged it (gated) AND the release check (the lease) allows it; held output
// keeps its order and leaves on the next acknowledge(), pump() or wait_input() once allowed.
// StreamBatchSource: the secondary's log stream refuses a batch out of sequence.
#include "replicator/pair_io.h"

#include "fencing/ack_freshness.h"

#include <gtest/gtest.h>

#include <string>

namespace {

using namespace tandem;
using namespace tandem::replicator;

// The console's far end: what a client would have received.
class ReceivedConsole final : public hooks::ConsolePort {
 public:
  size_t read_input(std::vector<uint8_t>&, size_t) override { return 0; }
  bool wait_input(std::chrono::nanoseconds) override { return false; }
  bool input_closed() const override { return false; }
  void write_output(std::span<const uint8_t> bytes) override {
    text.append(bytes.begin(), bytes.end());
    ++writes;
  }
  std::string text;
  int writes = 0;  // a write per segment the client would receive
};

void print(GatedConsole& gate, uint64_t icount, const std::string& s) {
  gate.set_output_icount(icount);
  gate.write_output({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

TEST(GatedConsole, UngatedOutputStillWaitsForTheLease) {
  ReceivedConsole client;
  GatedConsole gate(client);
  bool lease = false;
  gate.set_release_check([&](bool) { return lease; });
  print(gate, 10, "a");
  print(gate, 11, "b");
  EXPECT_EQ(client.text, "");
  EXPECT_EQ(gate.held_bytes(), 2u);
  gate.pump();
  EXPECT_EQ(client.text, "");
  lease = true;
  print(gate, 12, "c");  // behind held output: order is kept
  EXPECT_EQ(client.text, "abc");
  EXPECT_EQ(gate.released_bytes(), 3u);
}

TEST(GatedConsole, AcknowledgedOutputIsHeldWhileFencedAndPumpedWhenAllowed) {
  ReceivedConsole client;
  GatedConsole gate(client);
  bool lease = true;
  gate.set_release_check([&](bool) { return lease; });
  gate.set_gated(true);
  print(gate, 100, "x");
  print(gate, 200, "y");
  gate.acknowledge(101);
  EXPECT_EQ(client.text, "x");
  lease = false;  // the lease deadline passed
  gate.acknowledge(1000);
  EXPECT_EQ(client.text, "x");
  print(gate, 300, "z");
  EXPECT_EQ(gate.held_bytes(), 2u);
  lease = true;  // a late renewal was granted
  gate.pump();
  EXPECT_EQ(client.text, "xyz");
  EXPECT_EQ(gate.held_bytes(), 0u);
}

// A STANDALONE primary's guest answered while the lease was lapsed, then idles in WFI: the
// VM thread only waits for input from then on, and that wait must release the output once
// the lease is renewed (before, it stayed held until the guest's next input).
TEST(GatedConsole, HeldOutputLeavesWhileTheGuestWaitsForInput) {
  ReceivedConsole client;
  GatedConsole gate(client);
  bool lease = false;
  gate.set_release_check([&](bool) { return lease; });
  print(gate, 10, "OK\n");
  EXPECT_FALSE(gate.wait_input(std::chrono::nanoseconds(0)));
  EXPECT_EQ(client.text, "");
  lease = true;  // the renewal was granted on the lease keeper's thread
  EXPECT_FALSE(gate.wait_input(std::chrono::nanoseconds(0)));
  EXPECT_EQ(client.text, "OK\n");
  EXPECT_EQ(gate.held_bytes(), 0u);
}

TEST(GatedConsole, WithoutAReleaseCheckTheOutputRuleAloneDecides) {
  ReceivedConsole client;
  GatedConsole gate(client);
  print(gate, 1, "free ");
  gate.set_gated(true);
  print(gate, 5, "held");
  EXPECT_EQ(client.text, "free ");
  gate.acknowledge(5);  // covers icount < 5 only
  EXPECT_EQ(client.text, "free ");
  gate.set_gated(false);  // the secondary is gone: no ack to wait for
  EXPECT_EQ(client.text, "free held");
}

// Many replies covered by one acknowledgement reach the client in one write (not a send
// per line), in order, and only up to what the acknowledgement covers.
TEST(GatedConsole, OneAcknowledgementReleasesWhatItCoversInOneWrite) {
  ReceivedConsole client;
  GatedConsole gate(client);
  gate.set_gated(true);
  for (int i = 0; i < 16; ++i) print(gate, 100 + i, "OK" + std::to_string(i) + "\n");
  gate.acknowledge(110);  // covers the lines printed at icount 100..109
  EXPECT_EQ(client.writes, 1);
  EXPECT_EQ(client.text, "OK0\nOK1\nOK2\nOK3\nOK4\nOK5\nOK6\nOK7\nOK8\nOK9\n");
  EXPECT_EQ(gate.released_bytes(), client.text.size());
  gate.acknowledge(116);
  EXPECT_EQ(client.writes, 2);
  EXPECT_EQ(gate.held_bytes(), 0u);
  std::string all;
  for (int i = 0; i < 16; ++i) all += "OK" + std::to_string(i) + "\n";
  EXPECT_EQ(client.text, all);
  EXPECT_EQ(gate.take_latencies().size(), 16u);  // each line keeps its own latency sample
}

// The node's release check: the lease, or fresh acks for acknowledged output. The lease is
// lapsed throughout (the witness is away).
TEST(GatedConsole, FreshAcksReleaseAcknowledgedOutputWhileTheLeaseIsLapsed) {
  using namespace std::chrono_literals;
  ReceivedConsole client;
  GatedConsole gate(client);
  fencing::AckFreshness acks;
  bool lease = false;
  gate.set_release_check([&](bool acknowledged) { return fencing::may_release_output(lease, acknowledged, acks); });

  // STANDALONE (ungated): acks do not count, the lease does.
  acks.arm();
  acks.batch_sent(0);
  acks.batch_acknowledged(0, 300ms);
  ASSERT_TRUE(acks.fresh());
  print(gate, 1, "alone ");
  EXPECT_EQ(client.text, "");

  // PROTECTED: acknowledged output leaves on a fresh ack; unacknowledged output waits.
  lease = true;
  gate.pump();
  ASSERT_EQ(client.text, "alone ");
  lease = false;
  gate.set_gated(true);
  print(gate, 10, "a");
  print(gate, 20, "b");
  acks.batch_sent(1);
  acks.batch_acknowledged(1, 300ms);
  gate.acknowledge(11);
  EXPECT_EQ(client.text, "alone a");

  // A stale ack (a batch sent long ago) releases nothing, even if it covers the output.
  fencing::AckFreshness stale;
  stale.arm();
  stale.batch_sent(1, fencing::AckFreshness::Clock::now() - 10s);
  stale.batch_acknowledged(1, 300ms);
  gate.set_release_check([&](bool acknowledged) { return fencing::may_release_output(lease, acknowledged, stale); });
  gate.acknowledge(21);
  EXPECT_EQ(client.text, "alone a");
  EXPECT_EQ(gate.held_bytes(), 1u);

  // Disarmed (the link is lost): only the lease lets it out.
  gate.set_release_check([&](bool acknowledged) { return fencing::may_release_output(lease, acknowledged, acks); });
  acks.disarm();
  gate.pump();
  EXPECT_EQ(client.text, "alone a");
  lease = true;
  gate.pump();
  EXPECT_EQ(client.text, "alone ab");
}

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

}  // namespace
