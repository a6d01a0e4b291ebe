// The dual-path failure detector: the link path is fed by the node; the second path is a
// Boost.Asio TCP listener plus one outgoing connection, driven by C++20 coroutines on one
// I/O thread. See detector.h for the wire format.
#include "fencing/detector/detector.h"

#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio.hpp>
#include <cstring>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "net/endpoint.h"
#include "net/frame.h"
#include "net/hmac.h"
#include "net/hkdf.h"
#include "net/psk.h"
#include "proto/fencing.pb.h"

namespace tandem::fencing {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr size_t kChallengeBytes = net::kChallengeBytes;
constexpr uint32_t kMaxBeatPayload = 128;  // a Heartbeat is 56 bytes at most
constexpr std::string_view kDomain = "tandem-hb-v1";

auto use_ec(error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

// vm_id is the only variable-length field and is followed by fixed-size ones: unambiguous.
std::string beat_mac(const std::string& psk, std::string_view challenge, const std::string& vm_id, uint64_t counter,
                     uint64_t epoch, uint8_t role) {
  return net::labelled_mac(psk, kDomain,
                           {challenge, vm_id, net::le_bytes(counter, 8), net::le_bytes(epoch, 8), net::le_bytes(role, 1)});
}

tcp::endpoint parse(const std::string& text) { return net::parse_tcp_endpoint(text, /*allow_any_port=*/true); }

// Closes `socket` when `timer` fires first: the bound on one connect, read or write.
void arm(asio::steady_timer& timer, const std::shared_ptr<tcp::socket>& socket, std::chrono::milliseconds after) {
  timer.expires_after(after);
  timer.async_wait([weak = std::weak_ptr<tcp::socket>(socket)](error_code ec) {
    if (ec) return;
    if (auto s = weak.lock()) {
      error_code ignored;
      s->close(ignored);
    }
  });
}

}  // namespace

const char* to_string(PeerVerdict verdict) {
  switch (verdict) {
    case PeerVerdict::Alive: return "alive";
    case PeerVerdict::LinkSilent: return "degraded (link silent, second path alive)";
    case PeerVerdict::SecondPathSilent: return "degraded (second path silent, link alive)";
    case PeerVerdict::Suspected: return "suspected (every path silent)";
  }
  return "?";
}

// The coroutines hold no reference to Impl: stop() joins the I/O thread before Impl goes,
// and destroying the io_context then destroys the suspended coroutine frames (a
// shared_from_this() in them would be a cycle through the io_context, never freed).
struct FailureDetector::Impl {
  DetectorConfig cfg;
  std::string key;  // the heartbeat purpose key for cfg.vm_id (net/hkdf.h), never the PSK itself
  tcp::endpoint listen_at, peer_at;
  asio::io_context io;
  std::optional<tcp::acceptor> acceptor;
  std::thread thread;
  bool started = false;
  bool stopped = false;

  mutable std::mutex mutex;
  bool link_up = false;
  Clock::time_point link_last{};
  Clock::time_point path_last{};
  uint64_t current_connection = 0;  // the connection the last good heartbeat came on
  bool current_closed = true;       // ... and it has ended since
  PeerBeat beat;
  DetectorStats counters;
  std::set<std::shared_ptr<tcp::socket>> sockets;  // closed by stop()

  std::atomic<uint64_t> local_epoch{0};
  std::atomic<uint8_t> local_role{0};
  uint64_t next_connection_id = 0;  // I/O thread only
  net::Admission admission;

  explicit Impl(DetectorConfig c) : cfg(std::move(c)), admission(cfg.second.admission) {
    if (cfg.psk.size() < net::kMinPskBytes) throw std::invalid_argument("heartbeat path: the PSK is shorter than 16 bytes");
    key = net::derive_purpose_key(cfg.psk, net::KeyPurpose::kHeartbeat, cfg.vm_id);
    if (cfg.second.enabled()) {
      if (cfg.second.listen.empty() || cfg.second.peer.empty())
        throw std::invalid_argument("heartbeat path: needs both a listen and a peer address");
      listen_at = parse(cfg.second.listen);
      peer_at = parse(cfg.second.peer);
      if (cfg.second.timing.misses == 0 || cfg.second.timing.interval.count() <= 0)
        throw std::invalid_argument("heartbeat path: interval and misses must be positive");
    }
  }

  void track(const std::shared_ptr<tcp::socket>& s) {
    std::lock_guard lock(mutex);
    sockets.insert(s);
  }
  void untrack(const std::shared_ptr<tcp::socket>& s) {
    std::lock_guard lock(mutex);
    sockets.erase(s);
  }

  void reject(const std::string& why, const tcp::endpoint& from) {
    std::lock_guard lock(mutex);
    ++counters.rejected;
    counters.last_rejection = why;
    spdlog::warn("heartbeat path: closing the connection from {}:{}: {}", from.address().to_string(), from.port(), why);
  }

  // ---- receiving: our listener ---------------------------------------------------------
  asio::awaitable<void> accept_loop() {
    net::AcceptBackoff backoff;
    asio::steady_timer pause(io);
    for (;;) {
      error_code ec;
      tcp::socket socket = co_await acceptor->async_accept(use_ec(ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
        // EMFILE and the like: keep serving, after a growing pause (never a tight loop).
        const auto wait = backoff.next();
        spdlog::warn("heartbeat path: accept failed: {} (next try in {} ms)", ec.message(), wait.count());
        pause.expires_after(wait);
        co_await pause.async_wait(use_ec(ec));
        if (ec || !acceptor->is_open()) co_return;
        continue;
      }
      backoff.reset();
      const tcp::endpoint from = socket.remote_endpoint(ec);
      std::string why;
      auto slot = ec ? std::nullopt : admission.admit(from.address(), why);
      if (!slot) {
        if (!ec) reject(why, from);
        socket.close(ec);
        continue;
      }
      asio::co_spawn(io, receive(std::make_shared<tcp::socket>(std::move(socket)), std::move(*slot)), asio::detached);
    }
  }

  asio::awaitable<void> receive(std::shared_ptr<tcp::socket> socket, net::Admission::Slot slot) {
    track(socket);
    const uint64_t id = ++next_connection_id;
    error_code ec;
    const tcp::endpoint from = socket->remote_endpoint(ec);
    std::string challenge;
    try {
      challenge = net::random_bytes(kChallengeBytes);
    } catch (const std::runtime_error&) {
      untrack(socket);
      co_return;
    }
    asio::steady_timer timer(io);
    // A connection that says nothing for this long is dropped: it holds a slot for nothing.
    const auto idle_bound = std::max(cfg.second.timing.silence() * 4, std::chrono::milliseconds(2000));
    arm(timer, socket, idle_bound);
    co_await asio::async_write(*socket, asio::buffer(challenge), use_ec(ec));
    uint64_t expected = 1;
    bool authenticated = false;
    net::FrameHeader header{};
    std::string payload;
    wire::Heartbeat beat_in;
    while (!ec) {
      arm(timer, socket, idle_bound);
      co_await asio::async_read(*socket, asio::buffer(header), use_ec(ec));
      if (ec) break;
      const net::FrameHeaderFields fields = net::read_frame_header(header.data());
      if (fields.length > kMaxBeatPayload) {
        reject("not a heartbeat (a frame of " + std::to_string(fields.length) + " bytes)", from);
        break;
      }
      payload.resize(fields.length);
      co_await asio::async_read(*socket, asio::buffer(payload), use_ec(ec));
      if (ec) break;
      if (!net::frame_payload_ok(fields, payload) ||
          !beat_in.ParseFromArray(payload.data(), static_cast<int>(payload.size())) || beat_in.role() > 0xff) {
        reject("not a heartbeat (bad frame checksum or message)", from);
        break;
      }
      const uint64_t counter = beat_in.counter();
      const auto role = static_cast<uint8_t>(beat_in.role());
      if (!net::macs_equal(beat_mac(key, challenge, cfg.vm_id, counter, beat_in.epoch(), role), beat_in.mac())) {
        reject("bad HMAC (wrong key or VM id, or altered)", from);
        break;
      }
      if (counter != expected) {
        reject("counter " + std::to_string(counter) + ", expected " + std::to_string(expected) + " (replayed?)", from);
        break;
      }
      ++expected;
      authenticated = true;
      slot.release();  // a proven peer no longer counts against the unauthenticated caps
      std::lock_guard lock(mutex);
      path_last = Clock::now();
      current_connection = id;
      current_closed = false;
      beat = {beat_in.epoch(), role, counter};
      ++counters.beats_received;
      counters.peer_closed = false;
    }
    timer.cancel();
    {
      std::lock_guard lock(mutex);
      if (authenticated && current_connection == id && !stopped) {
        current_closed = true;
        // EOF or reset: the peer's end is gone (its process, or its host's stack said so);
        // a silent partition ends here only through our idle bound.
        counters.peer_closed = ec == asio::error::eof || ec == asio::error::connection_reset;
      }
    }
    error_code ignored;
    socket->close(ignored);
    untrack(socket);
  }

  // ---- sending: our connection to the peer's listener ----------------------------------
  asio::awaitable<void> send_loop() {
    const auto interval = cfg.second.timing.interval;
    const auto op_bound = std::max(cfg.second.timing.silence(), std::chrono::milliseconds(200));
    asio::steady_timer pause(io);
    bool reported_down = false;
    for (;;) {
      auto socket = std::make_shared<tcp::socket>(io);
      track(socket);
      asio::steady_timer timer(io);
      error_code ec;
      arm(timer, socket, op_bound);
      co_await socket->async_connect(peer_at, use_ec(ec));
      std::string challenge(kChallengeBytes, '\0');
      if (!ec) co_await asio::async_read(*socket, asio::buffer(challenge), use_ec(ec));
      timer.cancel();
      if (!ec && reported_down) {
        spdlog::info("heartbeat path: connected to {}:{}", peer_at.address().to_string(), peer_at.port());
        reported_down = false;
      }
      uint64_t counter = 0;
      while (!ec) {
        wire::Heartbeat beat_out;
        beat_out.set_counter(++counter);
        beat_out.set_epoch(local_epoch.load());
        beat_out.set_role(local_role.load());
        beat_out.set_mac(beat_mac(key, challenge, cfg.vm_id, beat_out.counter(), beat_out.epoch(),
                                  static_cast<uint8_t>(beat_out.role())));
        const std::string frame = net::encode_frame(beat_out, "heartbeat", kMaxBeatPayload);
        arm(timer, socket, op_bound);
        co_await asio::async_write(*socket, asio::buffer(frame), use_ec(ec));
        timer.cancel();
        if (ec) break;
        {
          std::lock_guard lock(mutex);
          ++counters.beats_sent;
        }
        pause.expires_after(interval);
        co_await pause.async_wait(use_ec(ec));
      }
      error_code ignored;
      socket->close(ignored);
      untrack(socket);
      {
        std::lock_guard lock(mutex);
        if (stopped) co_return;
      }
      if (!reported_down) {
        spdlog::info("heartbeat path: no connection to {}:{} ({}); retrying every {} ms", peer_at.address().to_string(),
                     peer_at.port(), ec.message(), interval.count());
        reported_down = true;
      }
      pause.expires_after(interval);
      co_await pause.async_wait(use_ec(ec));
      std::lock_guard lock(mutex);
      if (stopped) co_return;
    }
  }
};

FailureDetector::FailureDetector(DetectorConfig config) : impl_(std::make_shared<Impl>(std::move(config))) {}

FailureDetector::~FailureDetector() { stop(); }

void FailureDetector::start() {
  Impl& n = *impl_;
  if (n.started || !n.cfg.second.enabled()) {
    n.started = true;
    return;
  }
  n.started = true;
  try {
    n.acceptor.emplace(n.io);
    n.acceptor->open(n.listen_at.protocol());
    n.acceptor->set_option(tcp::acceptor::reuse_address(true));
    n.acceptor->bind(n.listen_at);
    n.acceptor->listen();
  } catch (const boost::system::system_error& e) {
    throw std::system_error(std::error_code(e.code().value(), std::generic_category()),
                            "heartbeat path: cannot listen on " + n.cfg.second.listen);
  }
  asio::co_spawn(n.io, n.accept_loop(), asio::detached);
  asio::co_spawn(n.io, n.send_loop(), asio::detached);
  n.thread = std::thread([impl = impl_] {
    try {
      impl->io.run();
    } catch (const std::exception& e) {
      spdlog::error("heartbeat path: I/O thread stopped: {}", e.what());
    }
  });
}

void FailureDetector::stop() {
  Impl& n = *impl_;
  {
    std::lock_guard lock(n.mutex);
    if (n.stopped) return;
    n.stopped = true;
  }
  if (!n.thread.joinable()) return;
  asio::post(n.io, [impl = impl_] {
    error_code ignored;
    if (impl->acceptor) impl->acceptor->close(ignored);
    std::set<std::shared_ptr<tcp::socket>> sockets;
    {
      std::lock_guard lock(impl->mutex);
      sockets = impl->sockets;
    }
    for (auto& s : sockets) s->close(ignored);
    impl->io.stop();
  });
  n.thread.join();
}

uint16_t FailureDetector::bound_port() const {
  return impl_->acceptor && impl_->acceptor->is_open() ? impl_->acceptor->local_endpoint().port() : 0;
}

void FailureDetector::set_local(uint64_t epoch, uint8_t role) {
  impl_->local_epoch = epoch;
  impl_->local_role = role;
}

void FailureDetector::link_heard(Clock::time_point now) {
  std::lock_guard lock(impl_->mutex);
  impl_->link_up = true;
  impl_->link_last = now;
}

void FailureDetector::link_down() {
  std::lock_guard lock(impl_->mutex);
  impl_->link_up = false;
}

bool FailureDetector::second_path_enabled() const { return impl_->cfg.second.enabled(); }

bool FailureDetector::link_alive(Clock::time_point now) const {
  std::lock_guard lock(impl_->mutex);
  return impl_->link_up && now - impl_->link_last < impl_->cfg.link.silence();
}

bool FailureDetector::second_path_alive(Clock::time_point now) const {
  if (!second_path_enabled()) return false;
  std::lock_guard lock(impl_->mutex);
  return !impl_->current_closed && now - impl_->path_last < impl_->cfg.second.timing.silence();
}

bool FailureDetector::second_path_peer_closed() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->current_closed && impl_->counters.peer_closed;
}

FailureDetector::Clock::time_point FailureDetector::second_path_last_heard() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->path_last;
}

PeerVerdict FailureDetector::verdict(Clock::time_point now) const {
  const bool link = link_alive(now);
  if (!second_path_enabled()) return link ? PeerVerdict::Alive : PeerVerdict::Suspected;
  const bool path = second_path_alive(now);
  if (link && path) return PeerVerdict::Alive;
  if (link) return PeerVerdict::SecondPathSilent;
  if (path) return PeerVerdict::LinkSilent;
  return PeerVerdict::Suspected;
}

PeerBeat FailureDetector::last_beat() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->beat;
}

DetectorStats FailureDetector::stats() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->counters;
}

}  // namespace tandem::fencing
