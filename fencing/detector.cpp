// The dual-path failure detector: the link path is fed by the node; the second path is a
// Boost.Asio TCP listener plus one outgoing connection, driven by C++20 coroutines on one
// I/O thread. See detector.h for the wire format.
#include "fencing/detector.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
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

namespace tandem::fencing {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr size_t kChallengeBytes = 32;
constexpr size_t kMacBytes = 32;
constexpr size_t kBeatBytes = 4 + 8 + 8 + 1 + kMacBytes;  // 53
constexpr char kMagic[4] = {'T', 'H', 'B', '1'};
constexpr std::string_view kDomain = "tandem-hb-v1";
constexpr size_t kMinPskBytes = 16;  // the link's minimum (replicator/transport/link.h)

auto use_ec(error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

void put_u64(uint8_t* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get_u64(const uint8_t* in) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | in[i];
  return v;
}

std::array<uint8_t, kMacBytes> beat_mac(const std::string& psk, const std::array<uint8_t, kChallengeBytes>& challenge,
                                        const std::string& vm_id, const uint8_t* counter_epoch_role /* 17 bytes */) {
  // vm_id is the only variable-length field and is followed by fixed-size ones: unambiguous.
  std::string input(kDomain);
  input.append(reinterpret_cast<const char*>(challenge.data()), challenge.size());
  input += vm_id;
  input.append(reinterpret_cast<const char*>(counter_epoch_role), 17);
  std::array<uint8_t, kMacBytes> mac{};
  unsigned int size = 0;
  if (!HMAC(EVP_sha256(), psk.data(), static_cast<int>(psk.size()), reinterpret_cast<const uint8_t*>(input.data()),
            input.size(), mac.data(), &size) ||
      size != kMacBytes) {
    throw std::runtime_error("heartbeat: HMAC-SHA256 failed");
  }
  return mac;
}

tcp::endpoint parse(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) throw std::invalid_argument("expected HOST:PORT, got \"" + text + "\"");
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) throw std::invalid_argument("expected a numeric host in \"" + text + "\"");
  unsigned long port = 0;
  try {
    port = std::stoul(text.substr(colon + 1));
  } catch (const std::exception&) {
    throw std::invalid_argument("expected a port in \"" + text + "\"");
  }
  if (port > 65535) throw std::invalid_argument("port out of range in \"" + text + "\"");
  return {address, static_cast<uint16_t>(port)};
}

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

  explicit Impl(DetectorConfig c) : cfg(std::move(c)) {
    if (cfg.psk.size() < kMinPskBytes) throw std::invalid_argument("heartbeat path: the PSK is shorter than 16 bytes");
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
    for (;;) {
      error_code ec;
      tcp::socket socket = co_await acceptor->async_accept(use_ec(ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
        continue;  // EMFILE and the like: keep serving
      }
      asio::co_spawn(io, receive(std::make_shared<tcp::socket>(std::move(socket))), asio::detached);
    }
  }

  asio::awaitable<void> receive(std::shared_ptr<tcp::socket> socket) {
    track(socket);
    const uint64_t id = ++next_connection_id;
    error_code ec;
    const tcp::endpoint from = socket->remote_endpoint(ec);
    std::array<uint8_t, kChallengeBytes> challenge{};
    if (RAND_bytes(challenge.data(), static_cast<int>(challenge.size())) != 1) {
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
    std::array<uint8_t, kBeatBytes> frame{};
    while (!ec) {
      arm(timer, socket, idle_bound);
      co_await asio::async_read(*socket, asio::buffer(frame), use_ec(ec));
      if (ec) break;
      if (std::memcmp(frame.data(), kMagic, 4) != 0) {
        reject("not a heartbeat (bad magic)", from);
        break;
      }
      const uint64_t counter = get_u64(frame.data() + 4);
      const auto mac = beat_mac(cfg.psk, challenge, cfg.vm_id, frame.data() + 4);
      if (CRYPTO_memcmp(mac.data(), frame.data() + 21, kMacBytes) != 0) {
        reject("bad HMAC (wrong key or VM id, or altered)", from);
        break;
      }
      if (counter != expected) {
        reject("counter " + std::to_string(counter) + ", expected " + std::to_string(expected) + " (replayed?)", from);
        break;
      }
      ++expected;
      authenticated = true;
      std::lock_guard lock(mutex);
      path_last = Clock::now();
      current_connection = id;
      current_closed = false;
      beat = {get_u64(frame.data() + 12), frame[20], counter};
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
      std::array<uint8_t, kChallengeBytes> challenge{};
      if (!ec) co_await asio::async_read(*socket, asio::buffer(challenge), use_ec(ec));
      timer.cancel();
      if (!ec && reported_down) {
        spdlog::info("heartbeat path: connected to {}:{}", peer_at.address().to_string(), peer_at.port());
        reported_down = false;
      }
      uint64_t counter = 0;
      while (!ec) {
        std::array<uint8_t, kBeatBytes> frame{};
        std::memcpy(frame.data(), kMagic, 4);
        put_u64(frame.data() + 4, ++counter);
        put_u64(frame.data() + 12, local_epoch.load());
        frame[20] = local_role.load();
        const auto mac = beat_mac(cfg.psk, challenge, cfg.vm_id, frame.data() + 4);
        std::memcpy(frame.data() + 21, mac.data(), kMacBytes);
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
