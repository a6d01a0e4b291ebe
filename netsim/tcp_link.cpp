#include "netsim/tcp_link.h"

#include <fcntl.h>
#include <unistd.h>

#include <deque>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <stdexcept>

namespace netsim {

using asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kPipeCapacity = 1 << 20;

auto use_ec(error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

// Closes a socket so that the peer sees RST rather than FIN (SO_LINGER with zero timeout).
void close_with_reset(tcp::socket& s) {
  if (!s.is_open()) return;
  error_code ignored;
  s.set_option(asio::socket_base::linger(true, 0), ignored);
  s.close(ignored);
}

Duration sample_jitter(Rng& rng, const DirectionPolicy& p) {
  if (p.jitter.count() == 0) return Duration(0);
  const double j = static_cast<double>(p.jitter.count());
  double offset = 0;
  if (p.distribution == JitterDistribution::Uniform) offset = (2 * rng.uniform() - 1) * j;
  else offset = std::clamp(rng.normal() * j, -3 * j, 3 * j);
  return Duration(static_cast<int64_t>(offset));
}

}  // namespace

// ---------------------------------------------------------------------------------------
// One proxied connection. Owned by the link's table and by its running coroutines; the
// last of them to finish frees it. It never touches the link from its destructor.
class TcpLink::Connection : public std::enable_shared_from_this<Connection> {
 public:
  // `stream` numbers the connection for its random streams; it restarts when a scenario
  // reseeds the link, while `index` (the table key) never repeats.
  Connection(TcpLink& link, uint64_t index, uint64_t stream, tcp::socket client)
      : link_(link),
        index_(index),
        client_(std::move(client)),
        target_(link.io_),
        connect_wait_(link.io_),
        up_(Direction::Up, client_, target_, link),
        down_(Direction::Down, target_, client_, link) {
    up_.rng = Rng(link_.stream_seed(Direction::Up, stream));
    down_.rng = Rng(link_.stream_seed(Direction::Down, stream));
  }

  ~Connection() {
    for (Pump* p : {&up_, &down_}) p->close_pipe();
  }

  void start() { asio::co_spawn(link_.io_, run(shared_from_this()), asio::detached); }

  // Wakes every waiting coroutine so it re-reads the policy.
  void wake() {
    connect_wait_.cancel();
    for (Pump* p : {&up_, &down_}) {
      p->reader_wake.cancel();
      p->writer_wake.cancel();
    }
  }

  // Ends the connection at once. With `reset`, both peers see RST.
  void abort(bool reset) {
    if (closed_) return;
    closed_ = true;
    error_code ignored;
    if (reset) {
      close_with_reset(client_);
      close_with_reset(target_);
    } else {
      client_.close(ignored);
      target_.close(ignored);
    }
    wake();
    link_.connection_closed(index_);
  }

 private:
  struct Chunk {
    std::vector<uint8_t> data;
    size_t offset = 0;
    Clock::time_point arrival;
    Duration jitter{0};
    bool released = false;
  };

  struct Pump {
    Pump(Direction d, tcp::socket& from, tcp::socket& to, TcpLink& link)
        : direction(d), src(from), dst(to), reader_wake(link.io_), writer_wake(link.io_) {}

    void close_pipe() {
      for (int& fd : pipe_fds) {
        if (fd >= 0) ::close(fd);
        fd = -1;
      }
    }

    Direction direction;
    tcp::socket& src;
    tcp::socket& dst;
    asio::steady_timer reader_wake;
    asio::steady_timer writer_wake;
    std::deque<Chunk> queue;
    uint64_t queued_bytes = 0;
    bool src_eof = false;
    bool writer_busy = false;
    bool finished = false;
    Rng rng;
    double corrupt_probability = 0;     // probability the skip below was drawn for
    uint64_t bytes_until_corrupt = 0;   // geometric skip: corruption positions do not depend on read sizes
    Clock::time_point last_release{};
    int pipe_fds[2] = {-1, -1};
    size_t pipe_capacity = 0;
    std::vector<uint8_t> scratch;
  };

  const DirectionPolicy& policy(const Pump& p) const { return link_.policy().of(p.direction); }

  // Waits on a wake timer until it fires or someone calls wake().
  asio::awaitable<void> sleep_until(asio::steady_timer& timer, Clock::time_point when) {
    error_code ec;
    timer.expires_at(when);
    co_await timer.async_wait(use_ec(ec));
  }

  asio::awaitable<void> run(std::shared_ptr<Connection> self) {
    // A partition in either direction would drop the SYN or the SYN-ACK: the upstream
    // connection waits for the heal, as a real connect would keep retrying.
    while (!closed_ && (link_.policy().up.partition || link_.policy().down.partition)) {
      co_await sleep_until(connect_wait_, Clock::time_point::max());
    }
    if (closed_) co_return;

    error_code ec;
    asio::steady_timer timeout(link_.io_);
    timeout.expires_after(link_.config_.connect_timeout);
    std::weak_ptr<Connection> weak = self;
    timeout.async_wait([weak](error_code timer_ec) {
      if (timer_ec) return;
      if (auto c = weak.lock()) {
        error_code ignored;
        c->target_.close(ignored);
      }
    });
    co_await target_.async_connect(link_.target_endpoint_, use_ec(ec));
    timeout.cancel();
    if (closed_) co_return;
    if (ec) {
      link_.connect_failures_.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("netsim {}: connect to target failed: {}", link_.name(), ec.message());
      abort(true);  // the client sees the failure as a reset, as with a refused upstream
      co_return;
    }
    for (tcp::socket* s : {&client_, &target_}) {
      s->set_option(tcp::no_delay(true), ec);  // the proxy must not add Nagle delays of its own
      s->non_blocking(true, ec);
    }
    for (Pump* p : {&up_, &down_}) {
      asio::co_spawn(link_.io_, reader(self, *p), asio::detached);
      asio::co_spawn(link_.io_, writer(self, *p), asio::detached);
    }
  }

  asio::awaitable<void> reader(std::shared_ptr<Connection> /*keeps the connection alive*/, Pump& p) {
    error_code ec;
    // After a read that filled the whole buffer more is probably waiting: read again at once
    // and only fall back to waiting for readiness when the socket runs dry.
    bool probably_readable = false;
    for (;;) {
      while (!closed_ && (policy(p).holds() || p.queued_bytes >= link_.config_.max_queue_bytes)) {
        co_await sleep_until(p.reader_wake, Clock::time_point::max());
      }
      if (closed_) co_return;
      if (!probably_readable) {
        co_await p.src.async_wait(tcp::socket::wait_read, use_ec(ec));
        if (closed_) co_return;
        if (ec) {
          abort(true);
          co_return;
        }
        if (policy(p).holds()) continue;  // the policy changed while we waited
      }
      probably_readable = false;

      if (policy(p).clean() && p.queue.empty() && !p.writer_busy) {
        const SpliceResult result = co_await splice_once(p);
        if (result == SpliceResult::Over) co_return;
        // Bulk streams refill the socket while we forward: trying again is cheaper than a
        // trip through epoll, and an empty attempt costs one syscall.
        probably_readable = result != SpliceResult::Empty;
        continue;
      }

      if (p.scratch.empty()) p.scratch.resize(kReadChunk);
      const size_t n = p.src.read_some(asio::buffer(p.scratch), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) continue;
      if (ec == asio::error::eof) {
        end_of_stream(p);
        co_return;
      }
      if (ec) {
        abort(true);
        co_return;
      }
      probably_readable = n == p.scratch.size();
      link_.count_in(p.direction, n, 1);
      if (closed_) co_return;  // a byte-triggered reset may have fired
      const DirectionPolicy& pol = policy(p);
      if (pol.blackhole) {
        auto& c = link_.counters(p.direction);
        c.add(c.dropped_bytes, n);
        c.add(c.dropped_packets, 1);
        continue;
      }
      Chunk chunk;
      chunk.data.assign(p.scratch.begin(), p.scratch.begin() + static_cast<ptrdiff_t>(n));
      chunk.arrival = Clock::now();
      chunk.jitter = sample_jitter(p.rng, pol);
      corrupt(p, pol, chunk.data);
      p.queued_bytes += n;
      p.queue.push_back(std::move(chunk));
      p.writer_wake.cancel();
    }
  }

  enum class SpliceResult { Over, Empty, Moved };

  // Zero-copy forwarding of whatever is readable now.
  asio::awaitable<SpliceResult> splice_once(Pump& p) {
    if (p.pipe_fds[0] < 0) {
      if (::pipe2(p.pipe_fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        abort(true);
        co_return SpliceResult::Over;
      }
      ::fcntl(p.pipe_fds[1], F_SETPIPE_SZ, static_cast<int>(kPipeCapacity));  // best effort
      const int capacity = ::fcntl(p.pipe_fds[1], F_GETPIPE_SZ);
      p.pipe_capacity = capacity > 0 ? static_cast<size_t>(capacity) : 4096;
    }
    const ssize_t n = ::splice(p.src.native_handle(), nullptr, p.pipe_fds[1], nullptr, p.pipe_capacity,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) co_return SpliceResult::Empty;
      abort(true);
      co_return SpliceResult::Over;
    }
    if (n == 0) {
      end_of_stream(p);
      co_return SpliceResult::Over;
    }
    link_.count_in(p.direction, static_cast<uint64_t>(n), 1);
    if (closed_) co_return SpliceResult::Over;
    p.writer_busy = true;
    size_t left = static_cast<size_t>(n);
    error_code ec;
    while (left > 0) {
      const ssize_t m = ::splice(p.pipe_fds[0], nullptr, p.dst.native_handle(), nullptr, left,
                                 SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (m > 0) {
        left -= static_cast<size_t>(m);
        continue;
      }
      if (m < 0 && (errno == EAGAIN || errno == EINTR)) {
        co_await p.dst.async_wait(tcp::socket::wait_write, use_ec(ec));
        if (closed_) co_return SpliceResult::Over;
        if (!ec) continue;
      }
      abort(true);
      co_return SpliceResult::Over;
    }
    p.writer_busy = false;
    auto& c = link_.counters(p.direction);
    c.add(c.bytes_out, static_cast<uint64_t>(n));
    c.add(c.packets_out, 1);
    co_return SpliceResult::Moved;
  }

  void corrupt(Pump& p, const DirectionPolicy& pol, std::vector<uint8_t>& data) {
    if (pol.corrupt <= 0) return;
    if (p.corrupt_probability != pol.corrupt) {
      p.corrupt_probability = pol.corrupt;
      p.bytes_until_corrupt = p.rng.geometric(pol.corrupt);
    }
    uint64_t flipped = 0;
    size_t position = 0;
    while (p.bytes_until_corrupt < data.size() - position) {
      position += p.bytes_until_corrupt;
      data[position] ^= static_cast<uint8_t>(1u << p.rng.below(8));
      ++flipped;
      ++position;
      p.bytes_until_corrupt = p.rng.geometric(pol.corrupt);
      if (position >= data.size()) break;
    }
    p.bytes_until_corrupt -= data.size() - position;
    if (flipped) {
      auto& c = link_.counters(p.direction);
      c.add(c.corrupted, flipped);
    }
  }

  void end_of_stream(Pump& p) {
    p.src_eof = true;
    p.writer_wake.cancel();
  }

  asio::awaitable<void> writer(std::shared_ptr<Connection> /*keeps the connection alive*/, Pump& p) {
    error_code ec;
    for (;;) {
      if (closed_) co_return;
      if (p.queue.empty()) {
        if (p.src_eof && !p.writer_busy) {
          p.dst.shutdown(tcp::socket::shutdown_send, ec);  // pass the FIN on
          pump_finished(p);
          co_return;
        }
        co_await sleep_until(p.writer_wake, Clock::time_point::max());
        continue;
      }
      const DirectionPolicy& pol = policy(p);
      if (pol.holds()) {
        co_await sleep_until(p.writer_wake, Clock::time_point::max());
        continue;
      }
      Chunk& chunk = p.queue.front();
      const auto now = Clock::now();
      if (!chunk.released) {
        // The delay is read from the current policy, so clearing a delay releases queued
        // data at once. Order is kept: a chunk never leaves before the one ahead of it.
        auto due = chunk.arrival + pol.delay + chunk.jitter;
        if (due < chunk.arrival) due = chunk.arrival;
        due = std::max(due, p.last_release);
        if (now < due) {
          co_await sleep_until(p.writer_wake, due);
          continue;
        }
        chunk.released = true;
        p.last_release = due;
      }
      size_t n = chunk.data.size() - chunk.offset;
      if (pol.slice_size) n = std::min<size_t>(n, pol.slice_size);
      if (pol.rate) {
        TokenBucket& bucket = link_.bucket(p.direction);
        bucket.configure(pol.rate, pol.burst, now);
        n = std::min<size_t>(n, bucket.burst());
        const Duration wait = bucket.try_take(n, now);
        if (wait.count() > 0) {
          co_await sleep_until(p.writer_wake, now + wait);
          continue;
        }
      }
      p.writer_busy = true;
      co_await asio::async_write(p.dst, asio::buffer(chunk.data.data() + chunk.offset, n), use_ec(ec));
      p.writer_busy = false;
      if (closed_) co_return;
      if (ec) {
        abort(true);
        co_return;
      }
      auto& c = link_.counters(p.direction);
      c.add(c.bytes_out, n);
      c.add(c.packets_out, 1);
      chunk.offset += n;
      p.queued_bytes -= n;
      if (chunk.offset == chunk.data.size()) p.queue.pop_front();
      p.reader_wake.cancel();  // there may be room in the queue again
      if (pol.slice_size && pol.slice_gap.count() > 0) {
        co_await sleep_until(p.writer_wake, Clock::now() + pol.slice_gap);
      }
    }
  }

  void pump_finished(Pump& p) {
    p.finished = true;
    if (up_.finished && down_.finished) abort(false);  // both halves closed cleanly
  }

  TcpLink& link_;
  const uint64_t index_;
  tcp::socket client_;
  tcp::socket target_;
  asio::steady_timer connect_wait_;
  Pump up_;
  Pump down_;
  bool closed_ = false;
};

// ---------------------------------------------------------------------------------------

TcpLink::TcpLink(asio::io_context& io, LinkConfig config, uint64_t simulator_seed, EventLog& events)
    : Link(io, std::move(config), simulator_seed, events), acceptor_(io) {}

TcpLink::~TcpLink() = default;

void TcpLink::start() {
  error_code ec;
  const auto listen_address = asio::ip::make_address(config_.listen_host, ec);
  if (ec) throw std::runtime_error(fmt::format("link '{}': bad listen address '{}'", name(), config_.listen_host));
  const auto target_address = asio::ip::make_address(config_.target_host, ec);
  if (ec) throw std::runtime_error(fmt::format("link '{}': bad target address '{}'", name(), config_.target_host));
  target_endpoint_ = tcp::endpoint(target_address, config_.target_port);
  listen_endpoint_ = tcp::endpoint(listen_address, config_.listen_port);
  running_ = true;
  open_acceptor();
  if (!acceptor_.is_open()) {
    running_ = false;
    throw std::runtime_error(fmt::format("link '{}': cannot listen on {}:{}", name(), config_.listen_host,
                                         config_.listen_port));
  }
  port_ = acceptor_.local_endpoint().port();
  // From now on the port is fixed, so refusing and re-listening reuse the same one.
  listen_endpoint_.port(port_);
}

void TcpLink::open_acceptor() {
  error_code ec;
  acceptor_.open(listen_endpoint_.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(listen_endpoint_, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    spdlog::error("netsim {}: cannot listen on {}: {}", name(), listen_endpoint_.port(), ec.message());
    acceptor_.close(ec);
    return;
  }
  asio::co_spawn(io_, accept_loop(++acceptor_generation_), asio::detached);
}

void TcpLink::stop() {
  running_ = false;
  error_code ignored;
  acceptor_.close(ignored);
  ++acceptor_generation_;
  clear_faults(std::nullopt, std::nullopt, std::nullopt);
  auto connections = std::move(connections_);
  for (auto& [index, c] : connections) c->abort(false);
}

asio::awaitable<void> TcpLink::accept_loop(uint64_t generation) {
  for (;;) {
    tcp::socket socket(io_);
    error_code ec;
    co_await acceptor_.async_accept(socket, use_ec(ec));
    if (!running_ || generation != acceptor_generation_) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      // Out of descriptors or similar: back off briefly instead of spinning.
      spdlog::warn("netsim {}: accept failed: {}", name(), ec.message());
      asio::steady_timer pause(io_);
      pause.expires_after(std::chrono::milliseconds(50));
      co_await pause.async_wait(use_ec(ec));
      if (!running_ || generation != acceptor_generation_) co_return;
      continue;
    }
    connections_accepted_.fetch_add(1, std::memory_order_relaxed);
    count_message();  // may start a message-triggered fault, e.g. a reset
    if (!running_ || generation != acceptor_generation_) {
      close_with_reset(socket);
      co_return;
    }
    if (policy().reset) {
      close_with_reset(socket);
      connections_reset_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    const uint64_t index = next_connection_++;
    auto connection = std::make_shared<Connection>(*this, index, next_stream_++, std::move(socket));
    connections_.emplace(index, connection);
    connections_active_.fetch_add(1, std::memory_order_relaxed);
    connection->start();
  }
}

void TcpLink::connection_closed(uint64_t index) {
  if (connections_.erase(index)) connections_active_.fetch_sub(1, std::memory_order_relaxed);
}

void TcpLink::reset_connections() {
  auto connections = connections_;  // abort() edits the table
  for (auto& [index, c] : connections) {
    c->abort(true);
    connections_reset_.fetch_add(1, std::memory_order_relaxed);
  }
  if (!connections.empty()) emit("reset", {{"connections", connections.size()}});
}

void TcpLink::policy_changed(const LinkPolicy& before) {
  const LinkPolicy& now = policy();
  if (now.reset && !before.reset) reset_connections();
  if (running_ && now.refuse != before.refuse) {
    if (now.refuse) {
      error_code ignored;
      acceptor_.close(ignored);  // new connections now get ECONNREFUSED from the kernel
      ++acceptor_generation_;
    } else {
      open_acceptor();
    }
  }
  for (auto& [index, c] : connections_) c->wake();
}

}  // namespace netsim
