// OutputGate, the output rule for every channel with self-fencing: output leaves only when
// the secondary has acknowledged it (gated) AND the release policy (the lease) allows it;
// held output keeps its order and leaves on the next acknowledge() or pump() once allowed
// (the Recorder pumps while the guest waits for input).
#include "replicator/output_gate.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "fencing/ack_freshness.h"
#include "tests/support/null_world.h"
#include "vmm-hooks/recorder.h"
#include "vmm/machine.h"

namespace {

using namespace tandem;
using namespace tandem::replicator;

// The console's far end: what a client would have received.
class ReceivedConsole final : public hooks::ConsolePort {
 public:
  size_t read_input(std::vector<uint8_t>&, size_t) override { return 0; }
  bool wait_input(std::chrono::nanoseconds) override {
    if (on_wait) on_wait();
    return false;
  }
  bool input_closed() const override { return closed; }
  void write_output(std::span<const uint8_t> bytes) override {
    text.append(bytes.begin(), bytes.end());
    ++writes;
  }
  std::string text;
  int writes = 0;  // a write per segment the client would receive
  bool closed = false;
  std::function<void()> on_wait;
};

using test::NullWorld;

void print(OutputGate& gate, uint64_t icount, const std::string& s) {
  gate.output(vmm::OutputChannel::Console, icount, {reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

void send_frame(OutputGate& gate, uint64_t icount, const std::string& frame) {
  gate.output(vmm::OutputChannel::Net, icount, {reinterpret_cast<const uint8_t*>(frame.data()), frame.size()});
}

// A release policy from a function, as the tests need (the node's is fencing::LeaseReleasePolicy).
class TestPolicy final : public fencing::ReleasePolicy {
 public:
  explicit TestPolicy(std::function<bool(bool)> f) : f_(std::move(f)) {}
  bool may_release(bool acknowledged) override { return f_(acknowledged); }

 private:
  std::function<bool(bool)> f_;
};

// The network's far end: the frames a NIC backend would have sent.
class ReceivedFrames final : public hooks::OutputPort {
 public:
  void write_output(std::span<const uint8_t> bytes) override { frames.emplace_back(bytes.begin(), bytes.end()); }
  std::vector<std::string> frames;
};

TEST(OutputGate, UngatedOutputStillWaitsForTheLease) {
  ReceivedConsole client;
  OutputGate gate(&client);
  bool lease = false;
  TestPolicy policy([&](bool) { return lease; });
  gate.set_release_policy(&policy);
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

TEST(OutputGate, AcknowledgedOutputIsHeldWhileFencedAndPumpedWhenAllowed) {
  ReceivedConsole client;
  OutputGate gate(&client);
  bool lease = true;
  TestPolicy policy([&](bool) { return lease; });
  gate.set_release_policy(&policy);
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
// the lease is renewed (before, it stayed held until the guest's next input). The Recorder
// pumps its output sink whenever it waits for console input.
TEST(OutputGate, HeldOutputLeavesWhileTheGuestWaitsForInput) {
  ReceivedConsole client;
  OutputGate gate(&client);
  bool lease = false;
  TestPolicy policy([&](bool) { return lease; });
  gate.set_release_policy(&policy);
  print(gate, 10, "OK\n");
  EXPECT_EQ(client.text, "");
  // The guest idles with no timer: the recorder waits for input; the renewal is granted on
  // the lease keeper's thread meanwhile (here: during the first wait). No input comes: the
  // next wait is the last (the console closes then, so the idle ends).
  int waits = 0;
  client.on_wait = [&] {
    if (++waits == 1) {
      lease = true;
    } else {
      client.closed = true;
    }
  };
  NullWorld world;
  vmm::MachineConfig mc;
  mc.mem_bytes = 1 << 20;
  vmm::Machine machine(mc, world);
  hooks::RecorderOptions options;
  options.time = hooks::GuestTime::Virtual;
  hooks::Recorder recorder(client, gate, options);
  EXPECT_FALSE(recorder.idle(machine, UINT64_MAX));
  EXPECT_EQ(client.text, "OK\n");
  EXPECT_EQ(gate.held_bytes(), 0u);
}

TEST(OutputGate, WithoutAReleaseCheckTheOutputRuleAloneDecides) {
  ReceivedConsole client;
  OutputGate gate(&client);
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
TEST(OutputGate, OneAcknowledgementReleasesWhatItCoversInOneWrite) {
  ReceivedConsole client;
  OutputGate gate(&client);
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
TEST(OutputGate, FreshAcksReleaseAcknowledgedOutputWhileTheLeaseIsLapsed) {
  using namespace std::chrono_literals;
  ReceivedConsole client;
  OutputGate gate(&client);
  fencing::AckFreshness acks;
  bool lease = false;
  fencing::AckFreshness* current = &acks;
  TestPolicy policy([&](bool acknowledged) { return fencing::may_release_output(lease, acknowledged, *current); });
  gate.set_release_policy(&policy);

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
  current = &stale;
  gate.acknowledge(21);
  EXPECT_EQ(client.text, "alone a");
  EXPECT_EQ(gate.held_bytes(), 1u);

  // Disarmed (the link is lost): only the lease lets it out.
  current = &acks;
  acks.disarm();
  gate.pump();
  EXPECT_EQ(client.text, "alone a");
  lease = true;
  gate.pump();
  EXPECT_EQ(client.text, "alone ab");
}


// Frames and console bytes share one queue and one rule: a frame leaves once acknowledged,
// whole and on its own (never merged with the next), in production order with the console;
// each channel counts its own released bytes and latencies.
TEST(OutputGate, NetworkFramesFollowTheSameRuleOneFrameAtATime) {
  ReceivedConsole client;
  ReceivedFrames nic;
  OutputGate gate(&client, &nic);
  gate.set_gated(true);
  const std::string f1(64, 'x'), f2(1514, 'y');
  print(gate, 10, "before\n");
  send_frame(gate, 11, f1);
  send_frame(gate, 12, f2);
  print(gate, 13, "after\n");
  EXPECT_TRUE(nic.frames.empty());
  gate.acknowledge(12);  // covers icount 10 and 11
  EXPECT_EQ(client.text, "before\n");
  ASSERT_EQ(nic.frames.size(), 1u);
  EXPECT_EQ(nic.frames[0], f1);
  gate.acknowledge(14);
  ASSERT_EQ(nic.frames.size(), 2u);
  EXPECT_EQ(nic.frames[1], f2);
  EXPECT_EQ(client.text, "before\nafter\n");
  EXPECT_EQ(gate.released_bytes(vmm::OutputChannel::Net), f1.size() + f2.size());
  EXPECT_EQ(gate.released_bytes(vmm::OutputChannel::Console), client.text.size());
  EXPECT_EQ(gate.take_latencies(vmm::OutputChannel::Net).size(), 2u);
  EXPECT_EQ(gate.take_latencies(vmm::OutputChannel::Console).size(), 2u);
  gate.reset_counts();
  EXPECT_EQ(gate.released_bytes(vmm::OutputChannel::Net), 0u);
}

// What tandemctl status shows per channel: held and released bytes and items, and the
// latency of the releases (none before the first).
TEST(OutputGate, ChannelStateCountsHeldAndReleasedPerChannel) {
  ReceivedConsole client;
  ReceivedFrames nic;
  OutputGate gate(&client, &nic);
  gate.set_gated(true);
  const std::string f1(60, 'a'), f2(100, 'b');
  print(gate, 10, "one\n");
  print(gate, 11, "two\n");
  send_frame(gate, 12, f1);
  send_frame(gate, 13, f2);
  OutputGate::ChannelState net = gate.state(vmm::OutputChannel::Net);
  EXPECT_EQ(net.held_items, 2u);
  EXPECT_EQ(net.held_bytes, f1.size() + f2.size());
  EXPECT_EQ(net.released_items, 0u);
  EXPECT_EQ(net.latency_p50_us, -1);
  OutputGate::ChannelState console = gate.state(vmm::OutputChannel::Console);
  EXPECT_EQ(console.held_items, 2u);
  EXPECT_EQ(console.held_bytes, 8u);
  gate.acknowledge(13);  // both lines (one write) and the first frame
  console = gate.state(vmm::OutputChannel::Console);
  EXPECT_EQ(console.held_items, 0u);
  EXPECT_EQ(console.released_items, 2u) << "two writes, released together";
  EXPECT_EQ(console.released_bytes, 8u);
  EXPECT_GE(console.latency_p50_us, 0);
  EXPECT_GE(console.latency_max_us, console.latency_p50_us);
  net = gate.state(vmm::OutputChannel::Net);
  EXPECT_EQ(net.held_items, 1u);
  EXPECT_EQ(net.held_bytes, f2.size());
  EXPECT_EQ(net.released_items, 1u);
  EXPECT_EQ(net.released_bytes, f1.size());
  gate.acknowledge(14);
  net = gate.state(vmm::OutputChannel::Net);
  EXPECT_EQ(net.held_items, 0u);
  EXPECT_EQ(net.released_items, 2u);
  EXPECT_EQ(nic.frames.size(), 2u);
  gate.reset_counts();
  EXPECT_EQ(gate.state(vmm::OutputChannel::Net).released_items, 0u);
}

// A frame produced later than held console output does not overtake it, even once the
// console is covered first: one queue, released in order.
TEST(OutputGate, AHeldFrameKeepsItsPlaceBehindTheLease) {
  ReceivedConsole client;
  ReceivedFrames nic;
  OutputGate gate(&client, &nic);
  bool lease = false;
  TestPolicy policy([&](bool) { return lease; });
  gate.set_release_policy(&policy);
  print(gate, 1, "a");
  send_frame(gate, 2, "frame");
  EXPECT_TRUE(nic.frames.empty());
  EXPECT_EQ(gate.held_bytes(), 6u);
  lease = true;
  gate.pump();
  EXPECT_EQ(client.text, "a");
  EXPECT_EQ(nic.frames, std::vector<std::string>{"frame"});
}

}  // namespace
