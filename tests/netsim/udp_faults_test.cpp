// Every UDP fault, measured at a receiving peer. Random faults run with fixed seeds and are
// checked against statistical bounds (about 5 standard deviations) and against the link's
// own counters, which must agree exactly with what the receiver saw.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <map>
#include <set>

#include "netsim/simulator.h"
#include "peers.h"

namespace netsim {
namespace {

using namespace std::chrono_literals;
using namespace netsim::test;

constexpr size_t kPayload = 64;

// [seq:4][payload:64][xxh64 of the first 68 bytes:8]
std::vector<uint8_t> make_datagram(uint32_t seq) {
  std::vector<uint8_t> d(4 + kPayload + 8);
  std::memcpy(d.data(), &seq, 4);
  for (size_t i = 0; i < kPayload; ++i) d[4 + i] = static_cast<uint8_t>(seq * 31 + i);
  const uint64_t h = XXH64(d.data(), 4 + kPayload, 0);
  std::memcpy(d.data() + 4 + kPayload, &h, 8);
  return d;
}

bool intact(const std::vector<uint8_t>& d) {
  if (d.size() != 4 + kPayload + 8) return false;
  uint64_t h;
  std::memcpy(&h, d.data() + 4 + kPayload, 8);
  return h == XXH64(d.data(), 4 + kPayload, 0);
}

uint32_t seq_of(const std::vector<uint8_t>& d) {
  uint32_t seq;
  std::memcpy(&seq, d.data(), 4);
  return seq;
}

// Sends `count` numbered datagrams through `port`, paced so no kernel buffer overflows.
void send_numbered(int fd, uint16_t port, uint32_t count, uint32_t first = 0) {
  for (uint32_t i = 0; i < count; ++i) {
    const auto d = make_datagram(first + i);
    udp_send(fd, port, d.data(), d.size());
    if (i % 50 == 49) std::this_thread::sleep_for(2ms);
  }
}

struct Received {
  std::vector<uint32_t> order;  // sequence numbers of intact datagrams in arrival order
  size_t corrupt = 0;
};

Received analyse(const std::vector<std::vector<uint8_t>>& datagrams) {
  Received r;
  for (const auto& d : datagrams) {
    if (intact(d)) r.order.push_back(seq_of(d));
    else r.corrupt++;
  }
  return r;
}

void expect_counters_consistent(const LinkStats& s) {
  EXPECT_EQ(s.up.send_errors, 0u);
  EXPECT_EQ(s.up.packets_in + s.up.duplicated, s.up.packets_out + s.up.dropped_packets);
}

// One complete run with its own simulator, so two runs can be compared.
Received run_with_fault(uint64_t seed, const FaultSpec& f, uint32_t count, LinkStats* stats = nullptr) {
  UdpServer sink(false);
  Simulator sim(SimulatorOptions{seed, ""});
  const uint16_t port = sim.add_link(udp_link("u", sink.port()));
  sim.set_fault("u", f);
  Fd client = udp_socket();
  send_numbered(client.get(), port, count);
  sink.settle();
  if (stats) *stats = sim.stats("u");
  return analyse(sink.received());
}

TEST(UdpFaults, ForwardsDatagramsBothWays) {
  UdpServer echo(true);
  Simulator sim(SimulatorOptions{1, ""});
  const uint16_t port = sim.add_link(udp_link("u", echo.port()));
  Fd client = udp_socket();
  const auto d = make_datagram(7);
  udp_send(client.get(), port, d.data(), d.size());
  std::vector<uint8_t> back(256);
  const ssize_t n = udp_recv(client.get(), back.data(), back.size(), 5000ms);
  ASSERT_EQ(n, static_cast<ssize_t>(d.size()));
  back.resize(static_cast<size_t>(n));
  EXPECT_EQ(back, d);
}

TEST(UdpFaults, LossRateWithinBoundsAndTheSameSeedLosesTheSameDatagrams) {
  const auto f = fault("loss", Direction::Up, {{"probability", "0.2"}});
  LinkStats stats;
  const Received first = run_with_fault(11, f, 2000, &stats);
  // Binomial(2000, 0.8): mean 1600, sd 17.9.
  EXPECT_GE(first.order.size(), 1510u);
  EXPECT_LE(first.order.size(), 1690u);
  EXPECT_EQ(first.order.size(), stats.up.packets_out);
  EXPECT_EQ(stats.up.dropped_packets, 2000 - first.order.size());
  expect_counters_consistent(stats);

  const Received again = run_with_fault(11, f, 2000);
  EXPECT_EQ(again.order, first.order) << "same seed, same traffic: the same datagrams are lost";
  const Received other = run_with_fault(12, f, 2000);
  EXPECT_NE(other.order, first.order);
}

TEST(UdpFaults, GilbertElliottLossComesInBursts) {
  // Bad state entered with p = 0.05, left with r = 0.25, loses everything while bad:
  // loss rate p/(p+r) = 1/6, mean burst length 1/r = 4.
  const auto f = fault("burst_loss", Direction::Up, {{"p", "0.05"}, {"r", "0.25"}});
  const uint32_t n = 3000;
  const Received r = run_with_fault(5, f, n);
  std::set<uint32_t> got(r.order.begin(), r.order.end());
  size_t lost = 0, bursts = 0;
  bool in_burst = false;
  for (uint32_t i = 0; i < n; ++i) {
    const bool missing = !got.count(i);
    lost += missing;
    if (missing && !in_burst) ++bursts;
    in_burst = missing;
  }
  const double rate = static_cast<double>(lost) / n;
  EXPECT_GT(rate, 0.08);
  EXPECT_LT(rate, 0.26);
  ASSERT_GT(bursts, 0u);
  const double mean_burst = static_cast<double>(lost) / static_cast<double>(bursts);
  // Independent loss at the same rate would give bursts of ~1.2.
  EXPECT_GT(mean_burst, 2.5) << "mean burst " << mean_burst;
}

TEST(UdpFaults, DuplicatesAreSeenByTheReceiver) {
  LinkStats stats;
  const Received r = run_with_fault(3, fault("duplicate", Direction::Up, {{"probability", "0.25"}}), 1000, &stats);
  std::map<uint32_t, int> seen;
  for (uint32_t s : r.order) seen[s]++;
  size_t duplicates = 0;
  for (auto& [seq, times] : seen) duplicates += static_cast<size_t>(times - 1);
  EXPECT_EQ(seen.size(), 1000u) << "nothing lost";
  EXPECT_EQ(duplicates, stats.up.duplicated);
  // Binomial(1000, 0.25): mean 250, sd 13.7.
  EXPECT_GE(duplicates, 180u);
  EXPECT_LE(duplicates, 320u);
}

TEST(UdpFaults, ReorderingIsSeenByTheReceiver) {
  LinkStats stats;
  const Received r = run_with_fault(4, fault("reorder", Direction::Up, {{"probability", "0.2"}, {"gap", "15ms"}}),
                                    1000, &stats);
  ASSERT_EQ(r.order.size(), 1000u);
  size_t out_of_order = 0;
  uint32_t highest = 0;
  for (size_t i = 0; i < r.order.size(); ++i) {
    if (i > 0 && r.order[i] < highest) ++out_of_order;
    highest = std::max(highest, r.order[i]);
  }
  EXPECT_GT(out_of_order, 50u) << "held-back datagrams arrive after later ones";
  EXPECT_GE(stats.up.reordered, 140u);
  EXPECT_LE(stats.up.reordered, 260u);
}

TEST(UdpFaults, CorruptionIsCaughtByAChecksum) {
  LinkStats stats;
  const Received r = run_with_fault(8, fault("corrupt", Direction::Up, {{"probability", "0.1"}}), 1000, &stats);
  EXPECT_EQ(r.corrupt, stats.up.corrupted) << "every flipped datagram fails its checksum";
  EXPECT_EQ(r.corrupt + r.order.size(), 1000u);
  // Binomial(1000, 0.1): mean 100, sd 9.5.
  EXPECT_GE(r.corrupt, 55u);
  EXPECT_LE(r.corrupt, 150u);
}

TEST(UdpFaults, DelayAddsTheSetTime) {
  UdpServer echo(true);
  Simulator sim(SimulatorOptions{1, ""});
  const uint16_t port = sim.add_link(udp_link("u", echo.port()));
  sim.set_fault("u", fault("delay", Direction::Down, {{"delay", "30ms"}}));
  Fd client = udp_socket();
  std::vector<std::chrono::microseconds> rtts;
  for (uint32_t i = 0; i < 7; ++i) {
    const auto d = make_datagram(i);
    const auto start = SteadyClock::now();
    udp_send(client.get(), port, d.data(), d.size());
    std::vector<uint8_t> back(256);
    ASSERT_GT(udp_recv(client.get(), back.data(), back.size(), 5000ms), 0);
    rtts.push_back(std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - start));
  }
  std::sort(rtts.begin(), rtts.end());
  EXPECT_GE(rtts.front(), 30ms);
  EXPECT_LE(rtts[rtts.size() / 2], 30ms + 30ms);
}

TEST(UdpFaults, OneWayPartitionCutsOnlyItsDirectionAndHeals) {
  UdpServer echo(true);
  Simulator sim(SimulatorOptions{1, ""});
  const uint16_t port = sim.add_link(udp_link("u", echo.port()));
  Fd client = udp_socket();
  std::vector<uint8_t> back(256);
  sim.set_fault("u", fault("partition", Direction::Down));
  const auto d = make_datagram(1);
  udp_send(client.get(), port, d.data(), d.size());
  EXPECT_TRUE(eventually([&] { return echo.count() == 1; })) << "up still flows";
  EXPECT_LT(udp_recv(client.get(), back.data(), back.size(), 300ms), 0) << "down is cut";
  sim.clear_faults("u");
  udp_send(client.get(), port, d.data(), d.size());
  EXPECT_GT(udp_recv(client.get(), back.data(), back.size(), 5000ms), 0) << "healed";

  sim.set_fault("u", fault("partition", Direction::Up));
  udp_send(client.get(), port, d.data(), d.size());
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(echo.count(), 2u) << "up is cut";
}

TEST(UdpFaults, FlappingPartitionTurnsOnAndOff) {
  UdpServer sink(false);
  Simulator sim(SimulatorOptions{1, ""});
  const uint16_t port = sim.add_link(udp_link("u", sink.port()));
  sim.set_fault("u", fault("flap", Direction::Both, {{"on", "100ms"}, {"off", "100ms"}}));
  Fd client = udp_socket();
  const uint32_t n = 200;  // one every 5 ms for about a second
  for (uint32_t i = 0; i < n; ++i) {
    const auto d = make_datagram(i);
    udp_send(client.get(), port, d.data(), d.size());
    std::this_thread::sleep_for(5ms);
  }
  const size_t got = sink.settle();
  EXPECT_GT(got, n / 5) << "the off phases let traffic through";
  EXPECT_LT(got, n * 4 / 5) << "the on phases cut it";
  size_t transitions = 0;
  for (const auto& e : sim.events().recent()) {
    const std::string ev = e["event"];
    if (ev == "fault_idle" || ev == "fault_active") ++transitions;
  }
  EXPECT_GE(transitions, 5u);
}

TEST(UdpFaults, RefuseDropsNewClientsOnly) {
  UdpServer echo(true);
  Simulator sim(SimulatorOptions{1, ""});
  const uint16_t port = sim.add_link(udp_link("u", echo.port()));
  Fd known = udp_socket();
  const auto d = make_datagram(1);
  std::vector<uint8_t> back(256);
  udp_send(known.get(), port, d.data(), d.size());
  ASSERT_GT(udp_recv(known.get(), back.data(), back.size(), 5000ms), 0);
  sim.set_fault("u", fault("refuse"));
  Fd stranger = udp_socket();
  udp_send(stranger.get(), port, d.data(), d.size());
  EXPECT_LT(udp_recv(stranger.get(), back.data(), back.size(), 300ms), 0);
  udp_send(known.get(), port, d.data(), d.size());
  EXPECT_GT(udp_recv(known.get(), back.data(), back.size(), 5000ms), 0);
  EXPECT_EQ(sim.stats("u").connections_refused, 1u);
}

TEST(UdpFaults, BandwidthCapDelaysDatagramsToTheRate) {
  UdpServer sink(false);
  Simulator sim(SimulatorOptions{1, ""});
  const uint16_t port = sim.add_link(udp_link("u", sink.port()));
  // 76-byte datagrams at 38 KB/s: 500 per second, with a bucket of 50 datagrams.
  sim.set_fault("u", fault("bandwidth", Direction::Up, {{"rate", "38000"}, {"burst", "3800"}}));
  Fd client = udp_socket();
  const auto start = SteadyClock::now();
  send_numbered(client.get(), port, 400);
  ASSERT_TRUE(eventually([&] { return sink.count() == 400; }, 20s));
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  // The first 50 go at once, the other 350 at 500/s: 0.7 s. Upper bound padded for a busy box.
  EXPECT_GT(seconds, 0.7 * 0.9);
  EXPECT_LT(seconds, 0.7 * 1.1 + 0.3);
}

}  // namespace
}  // namespace netsim
