// netsim benchmark. Measures, side by side in one run on 127.0.0.1:
//  - round-trip latency of a 64-byte TCP ping-pong, direct and through the proxy (no faults),
//    reporting p50/p99 and the latency the proxy adds;
//  - bulk TCP throughput direct and through the proxy, and their ratio.
// Targets: added p50 <= 50 us (toxiproxy, the anchor, adds roughly 100 us); ratio >= 0.8.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "netsim/simulator.h"
#include "peers.h"

using namespace netsim;
using namespace netsim::test;
using namespace std::chrono_literals;

namespace {

struct Latency {
  double p50_us = 0, p99_us = 0;
};

Latency ping_pong(uint16_t port, int rounds) {
  Fd c = tcp_connect(port);
  if (!c) {
    std::fprintf(stderr, "cannot connect\n");
    std::exit(1);
  }
  char msg[64] = {};
  std::vector<double> rtts;
  rtts.reserve(static_cast<size_t>(rounds));
  for (int i = 0; i < rounds + 500; ++i) {  // the first 500 warm up
    const auto start = SteadyClock::now();
    if (!send_all(c.get(), msg, sizeof msg) || recv_exact(c.get(), msg, sizeof msg, 5000ms) != sizeof msg) {
      std::fprintf(stderr, "ping-pong failed\n");
      std::exit(1);
    }
    if (i >= 500) rtts.push_back(std::chrono::duration<double, std::micro>(SteadyClock::now() - start).count());
  }
  std::sort(rtts.begin(), rtts.end());
  return {rtts[rtts.size() / 2], rtts[rtts.size() * 99 / 100]};
}

double bulk_mb_per_s(uint16_t port, std::atomic<uint64_t>& received, size_t bytes) {
  received = 0;
  std::vector<char> chunk(1 << 20, 'x');
  const auto start = SteadyClock::now();
  {
    Fd c = tcp_connect(port, nullptr, false);
    for (size_t sent = 0; sent < bytes; sent += chunk.size()) {
      if (!send_all(c.get(), chunk.data(), chunk.size())) {
        std::fprintf(stderr, "bulk send failed\n");
        std::exit(1);
      }
    }
  }
  while (received.load() < bytes) std::this_thread::sleep_for(100us);
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  return static_cast<double>(bytes) / seconds / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 20000;
  const size_t bulk_bytes = (argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1024) << 20;
  spdlog::set_level(spdlog::level::warn);

  TcpServer echo(echo_handler);
  std::atomic<uint64_t> received{0};
  TcpServer sink([&](int fd) {
    std::vector<char> buf(1 << 18);
    for (;;) {
      const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n <= 0) return;
      received += static_cast<uint64_t>(n);
    }
  });
  Simulator sim(SimulatorOptions{1, ""});
  const uint16_t echo_proxy = sim.add_link(tcp_link("echo", echo.port()));
  const uint16_t sink_proxy = sim.add_link(tcp_link("sink", sink.port()));

  const Latency direct = ping_pong(echo.port(), rounds);
  const Latency proxied = ping_pong(echo_proxy, rounds);
  std::printf("netsim latency (64 B TCP ping-pong, %d rounds, no faults)\n", rounds);
  std::printf("  direct        round trip p50 %7.1f us  p99 %7.1f us\n", direct.p50_us, direct.p99_us);
  std::printf("  via proxy     round trip p50 %7.1f us  p99 %7.1f us\n", proxied.p50_us, proxied.p99_us);
  std::printf("  added by proxy (both hops) p50 %7.1f us  p99 %7.1f us   target p50 <= 50 us (toxiproxy ~100 us)\n",
              proxied.p50_us - direct.p50_us, proxied.p99_us - direct.p99_us);

  // Best of three for each, interleaved, so a noisy neighbour hurts both alike.
  double direct_best = 0, proxied_best = 0;
  for (int i = 0; i < 3; ++i) {
    direct_best = std::max(direct_best, bulk_mb_per_s(sink.port(), received, bulk_bytes));
    proxied_best = std::max(proxied_best, bulk_mb_per_s(sink_proxy, received, bulk_bytes));
  }
  std::printf("netsim throughput (bulk TCP, %zu MiB, best of 3)\n", bulk_bytes >> 20);
  std::printf("  direct     %8.0f MB/s\n", direct_best);
  std::printf("  via proxy  %8.0f MB/s\n", proxied_best);
  std::printf("  ratio      %8.2f   target >= 0.80\n", proxied_best / direct_best);
  return 0;
}
