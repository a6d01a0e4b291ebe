// GatedConsole, the output rule with self-fencing: output leaves only when the secondary
// has acknowledged it (gated) AND the release check (the lease) allows it; held output
// keeps its order and leaves on the next acknowledge() or pump() once allowed.
#include "replicator/pair_io.h"

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
  void write_output(std::span<const uint8_t> bytes) override { text.append(bytes.begin(), bytes.end()); }
  std::string text;
};

void print(GatedConsole& gate, uint64_t icount, const std::string& s) {
  gate.set_output_icount(icount);
  gate.write_output({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

TEST(GatedConsole, UngatedOutputStillWaitsForTheLease) {
  ReceivedConsole client;
  GatedConsole gate(client);
  bool lease = false;
  gate.set_release_check([&] { return lease; });
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
  gate.set_release_check([&] { return lease; });
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

}  // namespace
