#include "netsim/udp_link.h"

#include <algorithm>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <stdexcept>

namespace netsim {

using asio::ip::udp;
using boost::system::error_code;

namespace {

constexpr size_t kMaxDatagram = 65536;

auto use_ec(error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

bool later(const auto& a, const auto& b) {
  return a.due != b.due ? a.due > b.due : a.sequence > b.sequence;
}

Duration jitter_of(Rng& rng, const DirectionPolicy& p) {
  if (p.jitter.count() == 0) return Duration(0);
  const double j = static_cast<double>(p.jitter.count());
  const double offset = p.distribution == JitterDistribution::Uniform ? (2 * rng.uniform() - 1) * j
                                                                     : std::clamp(rng.normal() * j, -3 * j, 3 * j);
  return Duration(static_cast<int64_t>(offset));
}

}  // namespace

UdpLink::UdpLink(asio::io_context& io, LinkConfig config, uint64_t simulator_seed, EventLog& events)
    : Link(io, std::move(config), simulator_seed, events),
      socket_(io),
      up_(Direction::Up, io),
      down_(Direction::Down, io),
      reap_timer_(io) {
  reseeded();
}

UdpLink::~UdpLink() = default;

void UdpLink::reseeded() {
  for (Lane* lane : {&up_, &down_}) {
    lane->rng = Rng(stream_seed(lane->direction, 0));
    lane->bad_state = false;
  }
}

void UdpLink::start() {
  error_code ec;
  const auto listen_address = asio::ip::make_address(config_.listen_host, ec);
  if (ec) throw std::runtime_error(fmt::format("link '{}': bad listen address '{}'", name(), config_.listen_host));
  const auto target_address = asio::ip::make_address(config_.target_host, ec);
  if (ec) throw std::runtime_error(fmt::format("link '{}': bad target address '{}'", name(), config_.target_host));
  target_ = udp::endpoint(target_address, config_.target_port);
  const udp::endpoint listen(listen_address, config_.listen_port);
  socket_.open(listen.protocol(), ec);
  if (!ec) socket_.bind(listen, ec);
  if (ec) {
    socket_.close(ec);
    throw std::runtime_error(
        fmt::format("link '{}': cannot listen on {}:{}", name(), config_.listen_host, config_.listen_port));
  }
  socket_.non_blocking(true, ec);
  // Bursts of datagrams should queue in the kernel, not be lost there (capped by rmem_max).
  socket_.set_option(asio::socket_base::receive_buffer_size(4 << 20), ec);
  socket_.set_option(asio::socket_base::send_buffer_size(4 << 20), ec);
  port_ = socket_.local_endpoint().port();
  running_ = true;
  asio::co_spawn(io_, receive_from_clients(), asio::detached);
  asio::co_spawn(io_, deliver(up_), asio::detached);
  asio::co_spawn(io_, deliver(down_), asio::detached);
  asio::co_spawn(io_, reap_idle_sessions(), asio::detached);
}

void UdpLink::stop() {
  running_ = false;
  error_code ignored;
  socket_.close(ignored);
  clear_faults(std::nullopt, std::nullopt, std::nullopt);
  reset_connections();
  for (Lane* lane : {&up_, &down_}) {
    lane->heap.clear();
    lane->wake.cancel();
  }
  reap_timer_.cancel();
}

void UdpLink::reset_connections() {
  for (auto& [client, session] : sessions_) {
    error_code ignored;
    session->upstream.close(ignored);
  }
  connections_active_.fetch_sub(sessions_.size(), std::memory_order_relaxed);
  sessions_.clear();
}

std::shared_ptr<UdpLink::Session> UdpLink::session_for(const udp::endpoint& client) {
  auto it = sessions_.find(client);
  if (it != sessions_.end()) return it->second;
  if (policy().refuse) {
    connections_refused_.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  auto session = std::make_shared<Session>(io_);
  session->client = client;
  error_code ec;
  session->upstream.open(target_.protocol(), ec);
  if (!ec) session->upstream.connect(target_, ec);
  if (ec) {
    connect_failures_.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  session->upstream.non_blocking(true, ec);
  session->upstream.set_option(asio::socket_base::receive_buffer_size(4 << 20), ec);
  session->upstream.set_option(asio::socket_base::send_buffer_size(4 << 20), ec);
  sessions_.emplace(client, session);
  connections_accepted_.fetch_add(1, std::memory_order_relaxed);
  connections_active_.fetch_add(1, std::memory_order_relaxed);
  asio::co_spawn(io_, receive_from_target(session), asio::detached);
  return session;
}

asio::awaitable<void> UdpLink::receive_from_clients() {
  std::vector<uint8_t> buffer(kMaxDatagram);
  udp::endpoint sender;
  error_code ec;
  while (running_) {
    const size_t n = co_await socket_.async_receive_from(asio::buffer(buffer), sender, use_ec(ec));
    if (!running_) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      continue;  // e.g. ECONNREFUSED reported for an earlier send to a client that left
    }
    auto session = session_for(sender);
    count_in(Direction::Up, n, 1);
    if (!session) {
      drop(up_, n);
      continue;
    }
    session->last_active = Clock::now();
    admit(up_, buffer.data(), n, session);
  }
}

asio::awaitable<void> UdpLink::receive_from_target(std::shared_ptr<Session> session) {
  std::vector<uint8_t> buffer(kMaxDatagram);
  error_code ec;
  for (;;) {
    const size_t n = co_await session->upstream.async_receive(asio::buffer(buffer), use_ec(ec));
    if (!running_ || !session->upstream.is_open()) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      continue;  // ECONNREFUSED: the target is not listening (yet); keep the session
    }
    session->last_active = Clock::now();
    count_in(Direction::Down, n, 1);
    admit(down_, buffer.data(), n, session);
  }
}

void UdpLink::drop(Lane& lane, size_t size) {
  auto& c = counters(lane.direction);
  c.add(c.dropped_packets, 1);
  c.add(c.dropped_bytes, size);
}

void UdpLink::admit(Lane& lane, const uint8_t* data, size_t size, const std::shared_ptr<Session>& session) {
  const DirectionPolicy& pol = policy().of(lane.direction);
  auto& c = counters(lane.direction);
  if (pol.partition || pol.blackhole) return drop(lane, size);
  if (pol.burst_loss) {
    // Gilbert-Elliott: the current state decides this datagram's fate, then the state moves.
    const GilbertElliott& ge = *pol.burst_loss;
    const bool lost = lane.rng.chance(lane.bad_state ? ge.bad_loss : ge.good_loss);
    lane.bad_state = lane.bad_state ? !lane.rng.chance(ge.r) : lane.rng.chance(ge.p);
    if (lost) return drop(lane, size);
  }
  if (pol.loss > 0 && lane.rng.chance(pol.loss)) return drop(lane, size);

  Datagram datagram;
  datagram.data.assign(data, data + size);
  datagram.session = session;
  if (pol.corrupt > 0 && size > 0 && lane.rng.chance(pol.corrupt)) {
    const uint64_t bit = lane.rng.below(size * 8);
    datagram.data[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    c.add(c.corrupted, 1);
  }
  const int copies = (pol.duplicate > 0 && lane.rng.chance(pol.duplicate)) ? 2 : 1;
  if (copies == 2) c.add(c.duplicated, 1);
  const auto now = Clock::now();
  for (int i = 0; i < copies; ++i) {
    Datagram copy = i + 1 < copies ? datagram : std::move(datagram);
    Duration wait = pol.delay + jitter_of(lane.rng, pol);
    if (pol.reorder > 0 && lane.rng.chance(pol.reorder)) {
      wait += pol.reorder_gap;
      c.add(c.reordered, 1);
    }
    copy.due = now + std::max(wait, Duration(0));
    // Fast path: nothing to wait for and nobody queued ahead.
    if (wait.count() <= 0 && pol.rate == 0 && lane.heap.empty()) {
      send(lane, copy);
      continue;
    }
    push(lane, std::move(copy));
  }
}

void UdpLink::push(Lane& lane, Datagram datagram) {
  if (lane.heap.size() >= config_.udp_max_queue) return drop(lane, datagram.data.size());
  datagram.sequence = lane.sequence++;
  lane.heap.push_back(std::move(datagram));
  std::push_heap(lane.heap.begin(), lane.heap.end(), [](const auto& a, const auto& b) { return later(a, b); });
  lane.wake.cancel();
}

void UdpLink::send(Lane& lane, const Datagram& datagram) {
  error_code ec;
  if (lane.direction == Direction::Up) {
    if (!datagram.session->upstream.is_open()) {
      counters(lane.direction).add(counters(lane.direction).send_errors, 1);
      return;
    }
    datagram.session->upstream.send(asio::buffer(datagram.data), 0, ec);
  } else {
    socket_.send_to(asio::buffer(datagram.data), datagram.session->client, 0, ec);
  }
  auto& c = counters(lane.direction);
  if (ec) {
    // Not a fault's decision: the kernel's (buffer full, peer gone). Counted apart so
    // `dropped` stays exactly what the seeded faults chose.
    c.add(c.send_errors, 1);
    return;
  }
  c.add(c.bytes_out, datagram.data.size());
  c.add(c.packets_out, 1);
}

asio::awaitable<void> UdpLink::deliver(Lane& lane) {
  error_code ec;
  const auto cmp = [](const auto& a, const auto& b) { return later(a, b); };
  while (running_) {
    const auto now = Clock::now();
    if (lane.heap.empty()) {
      lane.wake.expires_at(Clock::time_point::max());
      co_await lane.wake.async_wait(use_ec(ec));
      continue;
    }
    const Datagram& next = lane.heap.front();
    if (now < next.due) {
      lane.wake.expires_at(next.due);
      co_await lane.wake.async_wait(use_ec(ec));
      continue;
    }
    const DirectionPolicy& pol = policy().of(lane.direction);
    if (pol.rate) {
      lane.bucket.configure(pol.rate, pol.burst, now);
      const Duration wait = lane.bucket.try_take(next.data.size(), now);
      if (wait.count() > 0) {
        lane.wake.expires_after(wait);
        co_await lane.wake.async_wait(use_ec(ec));
        continue;
      }
    }
    std::pop_heap(lane.heap.begin(), lane.heap.end(), cmp);
    Datagram datagram = std::move(lane.heap.back());
    lane.heap.pop_back();
    send(lane, datagram);
  }
}

asio::awaitable<void> UdpLink::reap_idle_sessions() {
  error_code ec;
  const Duration period = std::max<Duration>(std::chrono::milliseconds(100), config_.udp_session_idle / 4);
  while (running_) {
    reap_timer_.expires_after(period);
    co_await reap_timer_.async_wait(use_ec(ec));
    if (!running_) co_return;
    const auto cutoff = Clock::now() - config_.udp_session_idle;
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (it->second->last_active < cutoff) {
        error_code ignored;
        it->second->upstream.close(ignored);
        it = sessions_.erase(it);
        connections_active_.fetch_sub(1, std::memory_order_relaxed);
      } else {
        ++it;
      }
    }
  }
}

void UdpLink::policy_changed(const LinkPolicy& before) {
  (void)before;
  // Queued datagrams keep their due times; the deliverers re-read the rate.
  up_.wake.cancel();
  down_.wake.cancel();
}

}  // namespace netsim
