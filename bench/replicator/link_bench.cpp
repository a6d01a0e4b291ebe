// Replication-link benchmark on 127.0.0.1: small-message round trip through two authenticated
// TCP links (send → peer's on_message → echo → on_message), next to a raw blocking-socket
// ping-pong of the same frame size; then one-way throughput of small and 1 MiB messages.
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

LinkIdentity identity(tandem::wire::Role role) {
  LinkIdentity id;
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
  std::unique_ptr<Transport> server_transport = make_tcp_transport(identity(tandem::wire::SECONDARY));
  std::unique_ptr<Transport> client_transport = make_tcp_transport(identity(tandem::wire::PRIMARY));
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

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 20000;

  // Round trip of a heartbeat.
  tandem::wire::Envelope ping;
  ping.set_epoch(1);
  ping.mutable_heartbeat()->set_sent_ns(123456789);
  ping.mutable_heartbeat()->set_icount(1ull << 40);
  const size_t frame_bytes = encode_link_frame(ping).size();
  Percentiles raw = raw_round_trip(iterations, frame_bytes);

  Percentiles link_rtt{};
  {
    LinkPair pair;
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
    link_rtt = percentiles(std::move(samples));
  }

  // One-way throughput: many small messages, then 1 MiB chunks.
  struct Run {
    double wall_seconds, cpu_seconds;
  };
  auto one_way = [](int count, const tandem::wire::Envelope& message) -> Run {
    LinkPair pair;
    std::atomic<int> received{0};
    pair.connect([&](Link&, tandem::wire::Envelope&&) {
      if (received.fetch_add(1) + 1 == count) received.notify_one();  // wake the sender once, at the end
    });
    pair.client->start();
    auto start = Clock::now();
    double cpu_start = process_cpu_seconds();
    for (int i = 0; i < count; ++i) {
      pair.client->send(message);
      // Bounded backlog, as the pair logic's flow control would keep it.
      while (pair.client->queued_bytes() > (64u << 20)) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    int seen;
    while ((seen = received.load()) < count) received.wait(seen);
    return {std::chrono::duration<double>(Clock::now() - start).count(), process_cpu_seconds() - cpu_start};
  };
  const int small_count = 200000;
  Run small = one_way(small_count, ping);
  tandem::wire::Envelope chunk;
  chunk.set_epoch(1);
  chunk.mutable_sync_chunk()->set_checkpoint(std::string(1 << 20, 'c'));
  const int chunk_count = 256;
  Run chunks = one_way(chunk_count, chunk);

  std::printf("replication link on loopback (%d round trips, %zu-byte frames)\n", iterations, frame_bytes);
  std::printf("  %-34s p50 %7.1f us   p99 %7.1f us\n", "raw TCP ping-pong (reference)", raw.p50_us, raw.p99_us);
  std::printf("  %-34s p50 %7.1f us   p99 %7.1f us   (x%.2f / x%.2f of raw)\n", "link round trip (send->echo->recv)",
              link_rtt.p50_us, link_rtt.p99_us, link_rtt.p50_us / raw.p50_us, link_rtt.p99_us / raw.p99_us);
  std::printf("  %-34s %9.0f msg/s   (%.2f us CPU per message, both sides)\n", "small messages one way",
              small_count / small.wall_seconds, small.cpu_seconds / small_count * 1e6);
  std::printf("  %-34s %9.0f MiB/s   (%.2f ms CPU per MiB, both sides)\n", "1 MiB messages one way",
              chunk_count / chunks.wall_seconds, chunks.cpu_seconds / chunk_count * 1e3);
  return 0;
}
