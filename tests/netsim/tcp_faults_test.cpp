// Every TCP fault, measured for its effect through a real proxy on 127.0.0.1.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <numeric>

#include "netsim/simulator.h"
#include "peers.h"

namespace netsim {
namespace {

using namespace std::chrono_literals;
using namespace netsim::test;

class TcpFaults : public ::testing::Test {
 protected:
  void SetUp() override { port_ = sim_.add_link(tcp_link("l", echo_.port())); }

  std::chrono::microseconds round_trip(int fd) {
    char out = 'x', in = 0;
    const auto start = SteadyClock::now();
    EXPECT_TRUE(send_all(fd, &out, 1));
    EXPECT_EQ(recv_exact(fd, &in, 1, 5000ms), 1u);
    return std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - start);
  }

  std::chrono::microseconds median_round_trip(int fd, int samples) {
    std::vector<std::chrono::microseconds> rtts;
    for (int i = 0; i < samples; ++i) rtts.push_back(round_trip(fd));
    std::sort(rtts.begin(), rtts.end());
    return rtts[rtts.size() / 2];
  }

  TcpServer echo_{echo_handler};
  Simulator sim_{SimulatorOptions{42, ""}};
  uint16_t port_ = 0;
};

TEST_F(TcpFaults, ForwardsBothWaysWithoutFaults) {
  Fd c = tcp_connect(port_);
  ASSERT_TRUE(c);
  const std::string msg = "hello through the proxy";
  ASSERT_TRUE(send_all(c.get(), msg.data(), msg.size()));
  std::string back(msg.size(), '\0');
  ASSERT_EQ(recv_exact(c.get(), back.data(), back.size(), 5000ms), msg.size());
  EXPECT_EQ(back, msg);
  const auto s = sim_.stats("l");
  EXPECT_EQ(s.up.bytes_out, msg.size());
  EXPECT_EQ(s.down.bytes_out, msg.size());
  EXPECT_EQ(s.connections_accepted, 1u);
}

TEST_F(TcpFaults, DelayAddsTheSetTimeInTheChosenDirectionOnly) {
  Fd c = tcp_connect(port_);
  ASSERT_TRUE(c);
  const auto base = median_round_trip(c.get(), 5);
  sim_.set_fault("l", fault("delay", Direction::Up, {{"delay", "40ms"}}));
  const auto delayed = median_round_trip(c.get(), 7);
  const auto added = delayed - base;
  EXPECT_GE(delayed, 40ms) << "a delay never comes early";
  EXPECT_LE(added, 40ms + 30ms) << "added " << added.count() << "us";
  // Also in the other direction only: the sum of both shows up once each.
  sim_.set_fault("l", fault("delay", Direction::Down, {{"delay", "20ms"}}));
  const auto both = median_round_trip(c.get(), 5);
  EXPECT_GE(both, 60ms);
  EXPECT_LE(both, 60ms + 30ms);
  // Clearing releases at once.
  sim_.clear_faults("l");
  EXPECT_LT(median_round_trip(c.get(), 5), 20ms);
}

TEST_F(TcpFaults, JitterSpreadsDelaysButKeepsStreamOrder) {
  sim_.set_fault("l", fault("delay", Direction::Up, {{"delay", "30ms"}, {"jitter", "10ms"}}));
  Fd c = tcp_connect(port_);
  ASSERT_TRUE(c);
  std::vector<std::chrono::microseconds> rtts;
  for (int i = 0; i < 15; ++i) rtts.push_back(round_trip(c.get()));
  const auto [lo, hi] = std::minmax_element(rtts.begin(), rtts.end());
  EXPECT_GE(*lo, 20ms - 1ms);
  EXPECT_LE(*lo, 40ms + 25ms);
  EXPECT_GE(*hi - *lo, 3ms) << "jitter should vary the delay";

  // Many small writes with jitter: TCP order must hold.
  std::vector<uint8_t> sent(200 * 50);
  for (size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<uint8_t>(i * 7 + i / 256);
  for (size_t i = 0; i < 200; ++i) {
    ASSERT_TRUE(send_all(c.get(), sent.data() + i * 50, 50));
    std::this_thread::sleep_for(200us);
  }
  std::vector<uint8_t> got(sent.size());
  ASSERT_EQ(recv_exact(c.get(), got.data(), got.size(), 10000ms), got.size());
  EXPECT_EQ(got, sent);
}

TEST_F(TcpFaults, BandwidthCapHoldsWithinTenPercent) {
  // A sink that timestamps its first and last byte.
  std::atomic<uint64_t> total{0};
  std::atomic<int64_t> first_ns{0}, last_ns{0};
  TcpServer sink([&](int fd) {
    std::vector<char> buf(65536);
    for (;;) {
      const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n <= 0) return;
      const auto now = SteadyClock::now().time_since_epoch().count();
      if (total == 0) first_ns = now;
      total += static_cast<uint64_t>(n);
      last_ns = now;
    }
  });
  sim_.add_link(tcp_link("capped", sink.port()));
  const uint64_t rate = 2'000'000;
  sim_.set_fault("capped", fault("bandwidth", Direction::Up, {{"rate", "2MB/s"}}));
  const size_t size = 3'000'000;  // 1.5 s at the cap: long enough to average out scheduling noise
  {
    Fd c = tcp_connect(sim_.listen_port("capped"));
    ASSERT_TRUE(c);
    std::vector<char> data(size, 'b');
    ASSERT_TRUE(send_all(c.get(), data.data(), data.size()));
  }
  ASSERT_TRUE(eventually([&] { return total.load() == size; }, 20s));
  const double seconds = static_cast<double>(last_ns - first_ns) / 1e9;
  const double measured = static_cast<double>(size) / seconds;
  EXPECT_NEAR(measured, static_cast<double>(rate), 0.10 * rate) << "measured " << measured << " B/s";
}

// A sink that compares what it receives with the pattern the client sends.
std::vector<uint8_t> pattern(size_t size) {
  std::vector<uint8_t> data(size);
  Rng rng(3);
  for (auto& b : data) b = static_cast<uint8_t>(rng.next());
  return data;
}

TEST_F(TcpFaults, CorruptionFlipsBitsThatAChecksumCatches) {
  const size_t size = 1 << 20;
  const auto sent = pattern(size);
  std::vector<uint8_t> received;
  std::mutex m;
  TcpServer sink([&](int fd) {
    std::vector<uint8_t> buf(size);
    const size_t n = recv_exact(fd, buf.data(), size, 20000ms);
    std::lock_guard lock(m);
    received.assign(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n));
  });
  sim_.add_link(tcp_link("noisy", sink.port()));
  sim_.set_fault("noisy", fault("corrupt", Direction::Up, {{"probability", "0.0001"}}));
  Fd c = tcp_connect(sim_.listen_port("noisy"));
  ASSERT_TRUE(send_all(c.get(), sent.data(), sent.size()));
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(m);
    return received.size() == size;
  }, 20s));
  std::lock_guard lock(m);
  size_t differing = 0;
  for (size_t i = 0; i < size; ++i) differing += sent[i] != received[i];
  EXPECT_NE(XXH64(sent.data(), size, 0), XXH64(received.data(), size, 0)) << "checksum must catch it";
  // Each corrupted byte has exactly one flipped bit, so the counter matches byte for byte.
  EXPECT_EQ(differing, sim_.stats("noisy").up.corrupted);
  // Expected 1048576 * 1e-4 = 105 (sd ~10); fixed seed, bounds at ~5 sd.
  EXPECT_GE(differing, 55u);
  EXPECT_LE(differing, 160u);
}

TEST_F(TcpFaults, StallHoldsTheStreamAndClearingReleasesItWithoutBlocking) {
  Fd c = tcp_connect(port_);
  ASSERT_TRUE(c);
  round_trip(c.get());
  sim_.set_fault("l", fault("stall", Direction::Up));
  char out = 's', in = 0;
  ASSERT_TRUE(send_all(c.get(), &out, 1));
  EXPECT_EQ(recv_exact(c.get(), &in, 1, 300ms), 0u) << "nothing passes while stalled";
  const auto before = SteadyClock::now();
  sim_.clear_faults("l", FaultKind::Stall);
  EXPECT_LT(SteadyClock::now() - before, 1s) << "clearing must not wait for held data";
  EXPECT_EQ(recv_exact(c.get(), &in, 1, 5000ms), 1u) << "held bytes flow after the clear";
  EXPECT_EQ(in, 's');
}

// A server that records what it receives and sends a tick every 10 ms.
struct TickServer {
  std::atomic<uint64_t> received{0};
  TcpServer server{[this](int fd) {
    std::atomic<bool> done{false};
    std::thread ticker([&] {
      while (!done) {
        if (!send_all(fd, "t", 1)) return;
        std::this_thread::sleep_for(10ms);
      }
    });
    char buf[256];
    for (;;) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      received += static_cast<uint64_t>(n);
    }
    done = true;
    ticker.join();
  }};
};

size_t drain(int fd, std::chrono::milliseconds for_how_long) {
  size_t total = 0;
  char buf[4096];
  const auto end = SteadyClock::now() + for_how_long;
  while (SteadyClock::now() < end) {
    if (!wait_readable(fd, 20ms)) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    total += static_cast<size_t>(n);
  }
  return total;
}

TEST_F(TcpFaults, OneWayPartitionStopsOnlyTheChosenDirectionAndHeals) {
  TickServer ticks;
  sim_.add_link(tcp_link("p", ticks.server.port()));
  Fd c = tcp_connect(sim_.listen_port("p"));
  ASSERT_TRUE(c);
  ASSERT_GT(drain(c.get(), 100ms), 0u);

  sim_.set_fault("p", fault("partition", Direction::Up));
  ASSERT_TRUE(send_all(c.get(), "abc", 3));
  EXPECT_GT(drain(c.get(), 300ms), 5u) << "down still flows";
  EXPECT_EQ(ticks.received.load(), 0u) << "up is cut";
  sim_.clear_faults("p");
  EXPECT_TRUE(eventually([&] { return ticks.received.load() == 3; })) << "held bytes arrive after the heal";

  sim_.set_fault("p", fault("partition", Direction::Down));
  drain(c.get(), 100ms);  // whatever was already in flight
  EXPECT_EQ(drain(c.get(), 300ms), 0u) << "down is cut";
  ASSERT_TRUE(send_all(c.get(), "de", 2));
  EXPECT_TRUE(eventually([&] { return ticks.received.load() == 5; })) << "up still flows";
  sim_.clear_faults("p");
  EXPECT_GT(drain(c.get(), 300ms), 0u) << "down heals";
}

TEST_F(TcpFaults, ResetIsSeenAsEconnresetByTheClient) {
  Fd c = tcp_connect(port_);
  ASSERT_TRUE(c);
  round_trip(c.get());
  sim_.set_fault("l", fault("reset"));
  char byte;
  int error = 0;
  EXPECT_EQ(recv_exact(c.get(), &byte, 1, 5000ms, &error), 0u);
  EXPECT_EQ(error, ECONNRESET);
  // While the fault is set, new connections are reset too.
  Fd c2 = tcp_connect(port_);
  ASSERT_TRUE(c2);
  EXPECT_EQ(recv_exact(c2.get(), &byte, 1, 5000ms, &error), 0u);
  EXPECT_EQ(error, ECONNRESET);
  EXPECT_GE(sim_.stats("l").connections_reset, 2u);
  sim_.clear_faults("l");
  Fd c3 = tcp_connect(port_);
  round_trip(c3.get());
}

TEST_F(TcpFaults, ResetAfterNBytesFiresOnTheByteCount) {
  // Counted on the up direction only: 600 bytes pass, the next 600 cross the threshold.
  sim_.set_fault("l", fault("reset", Direction::Up, {{"after_bytes", "1000"}}));
  Fd c = tcp_connect(port_);
  std::vector<char> data(600, 'r');
  ASSERT_TRUE(send_all(c.get(), data.data(), data.size()));
  ASSERT_EQ(recv_exact(c.get(), data.data(), 600, 5000ms), 600u) << "below the threshold all is well";
  EXPECT_EQ(sim_.stats("l").faults.at(0).state, "pending");
  ASSERT_TRUE(send_all(c.get(), data.data(), data.size()));
  char byte;
  int error = 0;
  const size_t got = recv_exact(c.get(), data.data(), 600, 5000ms, &error);
  EXPECT_LT(got, 600u);
  EXPECT_EQ(error, ECONNRESET);
  (void)byte;
}

TEST_F(TcpFaults, RefuseMakesNewConnectionsFailAndKeepsExistingOnes) {
  Fd existing = tcp_connect(port_);
  round_trip(existing.get());
  sim_.set_fault("l", fault("refuse"));
  int error = 0;
  Fd refused = tcp_connect(port_, &error);
  EXPECT_FALSE(refused);
  EXPECT_EQ(error, ECONNREFUSED);
  round_trip(existing.get());
  sim_.clear_faults("l");
  Fd again = tcp_connect(port_, &error);
  ASSERT_TRUE(again) << strerror(error);
  round_trip(again.get());
}

TEST_F(TcpFaults, BlackholeIsSeenAsATimeout) {
  sim_.set_fault("l", fault("blackhole", Direction::Up));
  Fd c = tcp_connect(port_);
  ASSERT_TRUE(send_all(c.get(), "ping", 4));
  char buf[4];
  int error = 0;
  EXPECT_EQ(recv_exact(c.get(), buf, 4, 400ms, &error), 0u);
  EXPECT_EQ(error, 0) << "no reset, no EOF: just silence";
  EXPECT_TRUE(eventually([&] { return sim_.stats("l").up.dropped_bytes == 4; }));
  EXPECT_EQ(echo_.accepted(), 1u) << "the connection itself was made";
}

TEST_F(TcpFaults, SliceCutsTheStreamIntoTinySegments) {
  sim_.set_fault("l", fault("slice", Direction::Down, {{"size", "8"}, {"gap", "1ms"}}));
  Fd c = tcp_connect(port_);
  std::vector<uint8_t> sent(400);
  std::iota(sent.begin(), sent.end(), 0);
  ASSERT_TRUE(send_all(c.get(), sent.data(), sent.size()));
  std::vector<uint8_t> got(sent.size());
  size_t reads = 0, have = 0;
  while (have < got.size() && wait_readable(c.get(), 5000ms)) {
    const ssize_t n = ::recv(c.get(), got.data() + have, got.size() - have, 0);
    if (n <= 0) break;
    have += static_cast<size_t>(n);
    ++reads;
  }
  EXPECT_EQ(got, sent);
  // The proxy counts a write once it completes, which can be just after the client read it.
  EXPECT_TRUE(eventually([&] { return sim_.stats("l").down.packets_out == 400u / 8; }))
      << "one write per 8-byte segment, got " << sim_.stats("l").down.packets_out;
  EXPECT_GT(reads, 5u) << "the receiver sees many small pieces";
}

TEST_F(TcpFaults, TimedPartitionExpiresByItself) {
  Fd c = tcp_connect(port_);
  round_trip(c.get());
  sim_.set_fault("l", fault("partition", Direction::Both, {{"for", "200ms"}}));
  const auto start = SteadyClock::now();
  char out = 'f', in = 0;
  ASSERT_TRUE(send_all(c.get(), &out, 1));
  ASSERT_EQ(recv_exact(c.get(), &in, 1, 5000ms), 1u);
  EXPECT_GE(SteadyClock::now() - start, 190ms);
  EXPECT_TRUE(sim_.stats("l").faults.empty());
}

TEST_F(TcpFaults, PartitionDefersNewConnectionsUntilHealed) {
  sim_.set_fault("l", fault("partition"));
  Fd c = tcp_connect(port_);  // the kernel completes the handshake with the proxy
  ASSERT_TRUE(send_all(c.get(), "x", 1));
  char in;
  EXPECT_EQ(recv_exact(c.get(), &in, 1, 200ms), 0u);
  EXPECT_EQ(echo_.accepted(), 0u) << "no upstream connection during the partition";
  sim_.clear_faults("l");
  EXPECT_EQ(recv_exact(c.get(), &in, 1, 5000ms), 1u);
}

TEST_F(TcpFaults, RemovingALinkClosesItsConnectionsAndFreesItsName) {
  Fd c = tcp_connect(port_);
  round_trip(c.get());
  sim_.remove_link("l");
  char in;
  EXPECT_EQ(recv_exact(c.get(), &in, 1, 5000ms), 0u) << "the connection is closed";
  EXPECT_THROW(sim_.stats("l"), std::invalid_argument);
  sim_.add_link(tcp_link("l", echo_.port()));  // the name can be used again
  Fd again = tcp_connect(sim_.listen_port("l"));
  round_trip(again.get());
}

}  // namespace
}  // namespace netsim
