// Load: thousands of short connections and one long bulk transfer through the proxy, with
// no sockets left open afterwards (and, under `make test-asan`, no leaked memory).
#include <gtest/gtest.h>
#include <xxhash.h>

#include "netsim/simulator.h"
#include "peers.h"

namespace netsim {
namespace {

using namespace std::chrono_literals;
using namespace netsim::test;

TEST(Load, ThousandsOfShortConnectionsLeaveNothingBehind) {
  TcpServer echo(echo_handler);
  const size_t fds_before = open_fd_count();
  {
    Simulator sim(SimulatorOptions{1, ""});
    const uint16_t port = sim.add_link(tcp_link("l", echo.port()));
    const size_t fds_serving = open_fd_count();
    constexpr int kThreads = 4, kPerThread = 500;
    std::atomic<int> ok{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < kThreads; ++t) {
      clients.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          Fd c = tcp_connect(port);
          if (!c) continue;
          char msg[32];
          const int len = std::snprintf(msg, sizeof msg, "client %d message %d", t, i);
          char back[32];
          if (send_all(c.get(), msg, static_cast<size_t>(len)) &&
              recv_exact(c.get(), back, static_cast<size_t>(len), 10000ms) == static_cast<size_t>(len) &&
              std::memcmp(msg, back, static_cast<size_t>(len)) == 0)
            ok++;
        }
      });
    }
    for (auto& c : clients) c.join();
    EXPECT_EQ(ok.load(), kThreads * kPerThread);
    EXPECT_TRUE(eventually([&] { return sim.stats("l").connections_active == 0; }, 20s))
        << sim.stats("l").connections_active << " connections still open";
    EXPECT_EQ(sim.stats("l").connections_accepted, static_cast<uint64_t>(kThreads * kPerThread));
    // The proxy's own descriptors are back to what it had before the load (listener, epoll...).
    EXPECT_TRUE(eventually([&] { return open_fd_count() <= fds_serving; }, 20s))
        << open_fd_count() << " open fds vs " << fds_serving;
  }
  EXPECT_TRUE(eventually([&] { return open_fd_count() <= fds_before; }, 20s));
}

TEST(Load, LongBulkTransferArrivesIntact) {
  const size_t size = 64 << 20;
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> hash{0};
  TcpServer sink([&](int fd) {
    XXH64_state_t* state = XXH64_createState();
    XXH64_reset(state, 0);
    std::vector<char> buf(1 << 16);
    for (;;) {
      const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n <= 0) break;
      XXH64_update(state, buf.data(), static_cast<size_t>(n));
      received += static_cast<uint64_t>(n);
    }
    hash = XXH64_digest(state);
    XXH64_freeState(state);
  });
  Simulator sim(SimulatorOptions{1, ""});
  const uint16_t port = sim.add_link(tcp_link("bulk", sink.port()));
  XXH64_state_t* sent = XXH64_createState();
  XXH64_reset(sent, 0);
  {
    Fd c = tcp_connect(port);
    std::vector<uint8_t> chunk(1 << 20);
    Rng rng(9);
    for (size_t off = 0; off < size; off += chunk.size()) {
      for (auto& b : chunk) b = static_cast<uint8_t>(rng.next());
      XXH64_update(sent, chunk.data(), chunk.size());
      ASSERT_TRUE(send_all(c.get(), chunk.data(), chunk.size()));
    }
  }
  const uint64_t expected = XXH64_digest(sent);
  XXH64_freeState(sent);
  ASSERT_TRUE(eventually([&] { return hash.load() != 0; }, 60s)) << received.load() << " of " << size;
  EXPECT_EQ(received.load(), size);
  EXPECT_EQ(hash.load(), expected);
  EXPECT_TRUE(eventually([&] { return sim.stats("bulk").connections_active == 0; }));
}

}  // namespace
}  // namespace netsim
