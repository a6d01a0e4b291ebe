// Replication-link benchmark on 127.0.0.1: small-message round trip through two authenticated
// TCP links (send → peer's on_message → echo → on_message), next to a raw blocking-socket
// ping-pong of the same frame size; then one-way throughput of small and 1 MiB messages.
// Each is measured with the frames sealed (AES-256-GCM, the default) and in cleartext
// ([pair] encryption = false), interleaved, over several rounds: min/median/max and the
// encrypted/cleartext ratios.
//   link_bench [ITERATIONS [ROUNDS]]
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utility>
#include <boost/asio.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "replicator/transport/frame.h"
#include "replicator/transport/link.h"

namespace {

using namespace tandem::replicator;
using Clock = std::chrono::steady_clock;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

const std::string kPsk = "benchmark-psk-benchmark-psk-0123";

LinkIdentity identity(tandem::wire::Role role, bool encryption) {
  LinkIdentity id;
  id.encryption = encryption;
  id.vm_id = "bench";
  id.node_name = role == tandem::wire::PRIMARY ? "a" : "b";
  id.psk = kPsk;
  id.epoch = 1;
  id.role = role;
  return id;
}

// CPU seconds used by the whole process (both transports' I/O threads and the sender), which
// a loaded shared machine distorts far less than wall time.
double process_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

struct Percentiles {
  double p50_us, p99_us;
};

Percentiles percentiles(std::vector<double> samples_us) {
  std::sort(samples_us.begin(), samples_us.end());
  auto at = [&](double q) { return samples_us[static_cast<size_t>(q * (samples_us.size() - 1))]; };
  return {at(0.50), at(0.99)};
}

// Reference: one frame-sized write and a blocking read each way on plain sockets.
Percentiles raw_round_trip(int iterations, size_t frame_bytes) {
  asio::io_context io;
  tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  std::thread echo([&] {
    tcp::socket socket = acceptor.accept();
    socket.set_option(tcp::no_delay(true));
    std::vector<char> buffer(frame_bytes);
    boost::system::error_code ec;
    while (asio::read(socket, asio::buffer(buffer), ec) == frame_bytes && !ec) {
      asio::write(socket, asio::buffer(buffer), ec);
      if (ec) break;
    }
  });
  tcp::socket socket(io);
  socket.connect(acceptor.local_endpoint());
  socket.set_option(tcp::no_delay(true));
  std::vector<char> buffer(frame_bytes, 'x');
  std::vector<double> samples;
  for (int i = 0; i < iterations; ++i) {
    auto start = Clock::now();
    asio::write(socket, asio::buffer(buffer));
    asio::read(socket, asio::buffer(buffer));
    samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  socket.close();
  echo.join();
  samples.erase(samples.begin(), samples.begin() + iterations / 10);  // warm-up
  return percentiles(std::move(samples));
}

struct LinkPair {
  explicit LinkPair(bool encryption)
      : server_transport(make_tcp_transport(identity(tandem::wire::SECONDARY, encryption))),
        client_transport(make_tcp_transport(identity(tandem::wire::PRIMARY, encryption))) {}
  std::unique_ptr<Transport> server_transport;
  std::unique_ptr<Transport> client_transport;
  std::shared_ptr<Link> server, client;

  // `server_handler` is installed on the server side before it starts.
  void connect(std::function<void(Link&, tandem::wire::Envelope&&)> server_handler) {
    std::promise<std::shared_ptr<Link>> accepted;
    server_transport->listen("127.0.0.1", 0, [&](std::shared_ptr<Link> link) {
      Link* raw = link.get();
      link->on_message = [raw, server_handler](tandem::wire::Envelope&& m) { server_handler(*raw, std::move(m)); };
      link->start();
      accepted.set_value(link);
    });
    std::promise<std::shared_ptr<Link>> connected;
    client_transport->connect("127.0.0.1", server_transport->bound_port(),
                              [&](std::shared_ptr<Link> link, std::string error) {
                                if (!link) {
                                  std::fprintf(stderr, "link_bench: connect failed: %s\n", error.c_str());
                                  std::exit(1);
                                }
                                connected.set_value(link);
                              });
    client = connected.get_future().get();
    server = accepted.get_future().get();
  }
};

struct Run {
  double wall_seconds, cpu_seconds;
};

// One-way: `count` messages, the backlog bounded as the pair logic's flow control keeps it.
Run one_way(bool encryption, int count, const tandem::wire::Envelope& message) {
  LinkPair pair(encryption);
  std::atomic<int> received{0};
  pair.connect([&](Link&, tandem::wire::Envelope&&) {
    if (received.fetch_add(1) + 1 == count) received.notify_one();  // wake the sender once, at the end
  });
  pair.client->start();
  auto start = Clock::now();
  double cpu_start = process_cpu_seconds();
  for (int i = 0; i < count; ++i) {
    pair.client->send(message);
    while (pair.client->queued_bytes() > (64u << 20)) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  int seen;
  while ((seen = received.load()) < count) received.wait(seen);
  return {std::chrono::duration<double>(Clock::now() - start).count(), process_cpu_seconds() - cpu_start};
}

Percentiles link_round_trip(bool encryption, int iterations, const tandem::wire::Envelope& ping) {
  LinkPair pair(encryption);
  pair.connect([](Link& link, tandem::wire::Envelope&& message) { link.send(std::move(message)); });
  std::atomic<uint64_t> replies{0};
  pair.client->on_message = [&](tandem::wire::Envelope&&) {
    replies.fetch_add(1);
    replies.notify_one();
  };
  pair.client->start();
  std::vector<double> samples;
  for (int i = 0; i < iterations; ++i) {
    uint64_t before = replies.load();
    auto start = Clock::now();
    pair.client->send(ping);
    replies.wait(before);
    samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  samples.erase(samples.begin(), samples.begin() + iterations / 10);
  return percentiles(std::move(samples));
}

struct Stats {
  double min, median, max;
};
Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v.front(), v[v.size() / 2], v.back()};
}

void print_row(const char* name, const std::vector<double>& off, const std::vector<double>& on, const char* unit) {
  const Stats a = stats(off), b = stats(on);
  std::vector<double> ratios;
  for (size_t i = 0; i < off.size(); ++i) ratios.push_back(on[i] / off[i]);
  const Stats r = stats(ratios);
  std::printf("  %-30s clear %8.1f/%8.1f/%8.1f  sealed %8.1f/%8.1f/%8.1f %-6s sealed/clear %.3f/%.3f/%.3f\n", name,
              a.min, a.median, a.max, b.min, b.median, b.max, unit, r.min, r.median, r.max);
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 10000;
  const int rounds = argc > 2 ? std::max(1, std::atoi(argv[2])) : 3;

  // Round trip of a heartbeat.
  tandem::wire::Envelope ping;
  ping.set_epoch(1);
  ping.mutable_heartbeat()->set_sent_ns(123456789);
  ping.mutable_heartbeat()->set_icount(1ull << 40);
  const size_t frame_bytes = encode_link_frame(ping).size();
  tandem::wire::Envelope chunk;
  chunk.set_epoch(1);
  chunk.mutable_sync_chunk()->set_checkpoint(std::string(1 << 20, 'c'));
  const int small_count = 100000, chunk_count = 256;

  std::vector<double> raw_p50, raw_p99, p50[2], p99[2], small_rate[2], small_cpu[2], mib_rate[2], mib_cpu[2];
  for (int round = 0; round < rounds; ++round) {
    const Percentiles raw = raw_round_trip(iterations, frame_bytes);
    raw_p50.push_back(raw.p50_us);
    raw_p99.push_back(raw.p99_us);
    for (int sealed = 0; sealed < 2; ++sealed) {  // interleaved: both see the same load
      const Percentiles rtt = link_round_trip(sealed, iterations, ping);
      p50[sealed].push_back(rtt.p50_us);
      p99[sealed].push_back(rtt.p99_us);
      const Run small = one_way(sealed, small_count, ping);
      small_rate[sealed].push_back(small_count / small.wall_seconds / 1000);
      small_cpu[sealed].push_back(small.cpu_seconds / small_count * 1e6);
      const Run chunks = one_way(sealed, chunk_count, chunk);
      mib_rate[sealed].push_back(chunk_count / chunks.wall_seconds);
      mib_cpu[sealed].push_back(chunks.cpu_seconds / chunk_count * 1e3);
    }
  }

  std::printf("replication link on loopback (%d round trips of %zu-byte frames, %d rounds; min/median/max)\n",
              iterations, frame_bytes, rounds);
  const Stats r50 = stats(raw_p50), r99 = stats(raw_p99);
  std::printf("  %-30s p50 %.1f/%.1f/%.1f us   p99 %.1f/%.1f/%.1f us\n", "raw TCP ping-pong (reference)", r50.min,
              r50.median, r50.max, r99.min, r99.median, r99.max);
  print_row("link round trip p50", p50[0], p50[1], "us");
  print_row("link round trip p99", p99[0], p99[1], "us");
  std::vector<double> added;
  for (size_t i = 0; i < p50[0].size(); ++i) added.push_back(p50[1][i] - p50[0][i]);
  const Stats a = stats(added);
  std::printf("  %-30s %.1f/%.1f/%.1f us\n", "added by sealing, p50", a.min, a.median, a.max);
  print_row("small messages one way", small_rate[0], small_rate[1], "k/s");
  print_row("  CPU per small message", small_cpu[0], small_cpu[1], "us");
  print_row("1 MiB messages one way", mib_rate[0], mib_rate[1], "MiB/s");
  print_row("  CPU per MiB (both sides)", mib_cpu[0], mib_cpu[1], "ms");
  return 0;
}
