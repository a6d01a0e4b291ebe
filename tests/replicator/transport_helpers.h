#pragma once
// Helpers for the transport tests: identities, a recorder of what a Link delivers, a
// listening transport that collects its links, a raw (hostile or hand-driven) peer on a plain
// blocking socket, and a spdlog ring buffer to assert what was logged. 127.0.0.1 only; every
// wait has a generous deadline so a slow shared machine never fails a test.
#include <poll.h>
#include <unistd.h>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio.hpp>

#include <xxhash.h>

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "replicator/transport/auth.h"
#include "replicator/transport/frame.h"
#include "replicator/transport/link.h"

namespace tandem::replicator::testing {

using namespace std::chrono_literals;
inline constexpr auto kWait = 10s;  // generous: the machine is shared
inline const std::string kPsk = "0123456789abcdef0123456789abcdef";
inline const std::string kVmId = "vm-test";

inline LinkIdentity identity(wire::Role role, uint64_t epoch = 1, std::string psk = kPsk, std::string vm_id = kVmId) {
  LinkIdentity id;
  id.vm_id = std::move(vm_id);
  id.node_name = role == wire::PRIMARY ? "node-a" : "node-b";
  id.psk = std::move(psk);
  id.epoch = epoch;
  id.role = role;
  return id;
}

// Polls `condition` until it holds or `timeout` passes.
template <typename Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout = kWait) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// Every log line, kept so tests can check that a refusal was logged with its reason.
class LogCapture {
 public:
  LogCapture() : ring_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(4096)) {
    previous_ = spdlog::default_logger();
    auto stderr_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    stderr_sink->set_level(spdlog::level::warn);
    auto logger = std::make_shared<spdlog::logger>("test", spdlog::sinks_init_list{ring_, stderr_sink});
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }

  bool contains(const std::string& text) const {
    for (const auto& line : ring_->last_formatted()) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }
  // Logging happens on the I/O thread, possibly just after the effect a test waited for.
  bool eventually_contains(const std::string& text) const {
    return eventually([&] { return contains(text); });
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> ring_;
  std::shared_ptr<spdlog::logger> previous_;
};

// Records what one Link delivers. Install before start(). Always owned by a shared_ptr: the
// callbacks keep it alive, since a transport stopped later still calls on_closed.
class Inbox : public std::enable_shared_from_this<Inbox> {
 public:
  void attach(Link& link) {
    link.on_message = [self = shared_from_this()](wire::Envelope&& envelope) {
      std::lock_guard lock(self->mutex_);
      self->messages_.push_back(std::move(envelope));
      self->changed_.notify_all();
    };
    link.on_closed = [self = shared_from_this()](const std::string& reason) {
      std::lock_guard lock(self->mutex_);
      self->close_reasons_.push_back(reason);
      self->changed_.notify_all();
    };
  }

  bool wait_messages(size_t count, std::chrono::milliseconds timeout = kWait) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return messages_.size() >= count; });
  }
  bool wait_closed(std::chrono::milliseconds timeout = kWait) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return !close_reasons_.empty(); });
  }
  std::vector<wire::Envelope> messages() const {
    std::lock_guard lock(mutex_);
    return messages_;
  }
  std::vector<std::string> close_reasons() const {
    std::lock_guard lock(mutex_);
    return close_reasons_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<wire::Envelope> messages_;
  std::vector<std::string> close_reasons_;
};

// A listening transport that keeps every link it accepts, each with its own started Inbox.
class Server {
 public:
  explicit Server(LinkIdentity me = identity(wire::SECONDARY), TransportOptions options = {})
      : transport_(make_tcp_transport(me, options)) {
    transport_->listen("127.0.0.1", 0, [this](std::shared_ptr<Link> link) {
      auto inbox = std::make_shared<Inbox>();
      inbox->attach(*link);
      link->start();
      std::lock_guard lock(mutex_);
      accepted_.push_back({link, inbox});
      changed_.notify_all();
    });
  }

  // Stopped first, while everything its callbacks touch still exists.
  ~Server() { transport_->stop(); }

  uint16_t port() const { return transport_->bound_port(); }
  Transport& transport() { return *transport_; }

  // The n-th accepted link (0-based), waiting for it.
  std::pair<std::shared_ptr<Link>, std::shared_ptr<Inbox>> link(size_t n = 0) {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, kWait, [&] { return accepted_.size() > n; })) return {};
    return accepted_[n];
  }
  size_t accepted() const {
    std::lock_guard lock(mutex_);
    return accepted_.size();
  }

 private:
  std::unique_ptr<Transport> transport_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::pair<std::shared_ptr<Link>, std::shared_ptr<Inbox>>> accepted_;
};

struct ConnectResult {
  std::shared_ptr<Link> link;
  std::string error;
};

// A connect to 127.0.0.1:`port` under way, for tests that play the listener by hand between
// starting it and waiting for its result.
class PendingConnect {
 public:
  PendingConnect(Transport& transport, uint16_t port) {
    auto promise = std::make_shared<std::promise<ConnectResult>>();
    future_ = promise->get_future();
    transport.connect("127.0.0.1", port, [promise](std::shared_ptr<Link> link, std::string error) {
      promise->set_value({std::move(link), std::move(error)});
    });
  }
  // The result, or an error saying the callback never ran within kWait.
  ConnectResult wait() {
    if (future_.wait_for(kWait) != std::future_status::ready) return {nullptr, "test: connect never completed"};
    return future_.get();
  }

 private:
  std::future<ConnectResult> future_;
};

inline ConnectResult connect_and_wait(Transport& transport, uint16_t port) {
  return PendingConnect(transport, port).wait();
}

inline wire::Envelope heartbeat(uint64_t icount, uint64_t epoch = 0) {
  wire::Envelope envelope;
  envelope.set_epoch(epoch);
  envelope.mutable_heartbeat()->set_icount(icount);
  return envelope;
}

inline std::string frame_bytes(const google::protobuf::MessageLite& message) {
  auto frame = encode_link_frame(message);
  return std::string(frame.header.begin(), frame.header.end()) + frame.payload;
}

inline std::string raw_frame(const std::string& payload) {
  std::string out(kFrameHeaderBytes, '\0');
  uint32_t length = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(length >> (8 * i));
  uint64_t hash = XXH3_64bits(payload.data(), payload.size());
  for (int i = 0; i < 8; ++i) out[4 + i] = static_cast<char>(hash >> (8 * i));
  return out + payload;
}

// A peer on a plain blocking socket, driven byte by byte by the test.
class RawPeer {
 public:
  RawPeer() : socket_(io_) {}
  explicit RawPeer(boost::asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}

  bool connect(uint16_t port) {
    boost::system::error_code ec;
    socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
    return !ec;
  }
  // From another loopback address (127.0.0.2 ...): a second "host" for per-address limits.
  bool connect_from(const std::string& source, uint16_t port) {
    boost::system::error_code ec;
    socket_.open(boost::asio::ip::tcp::v4(), ec);
    if (!ec) socket_.bind({boost::asio::ip::make_address(source), 0}, ec);
    if (!ec) socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
    return !ec;
  }

  bool write(const std::string& bytes) {
    boost::system::error_code ec;
    boost::asio::write(socket_, boost::asio::buffer(bytes), ec);
    return !ec;
  }
  // After handshake(), frames are sealed and opened with the link's frame keys, as the real
  // transport does; write() stays raw (for forged bytes).
  bool send(const wire::Envelope& envelope) {
    if (!sealer_) return write(frame_bytes(envelope));
    return send_payload(envelope.SerializeAsString());
  }
  // `payload` sealed as the next frame (any bytes: e.g. a sealed invalid protobuf).
  bool send_payload(std::string payload) {
    if (sealer_) sealer_->seal(payload);
    return write(raw_frame(payload));
  }
  // The next frame sealed, as raw bytes, without sending it (to replay or reorder it).
  std::string seal_frame(const wire::Envelope& envelope) {
    std::string payload = envelope.SerializeAsString();
    if (sealer_) sealer_->seal(payload);
    return raw_frame(payload);
  }

  // The next whole frame parsed as an Envelope, or nullopt on timeout, close or a bad frame.
  std::optional<wire::Envelope> receive(std::chrono::milliseconds timeout = kWait) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      std::string_view payload;
      std::string error;
      auto status = reader_.next(payload, error);
      if (status == FrameReader::Status::kError) return std::nullopt;
      if (status == FrameReader::Status::kFrame) {
        if (opener_ && !opener_->open(payload, opened_)) {
          // The peer's first frame did not open: a side that refused our proof never had
          // the keys and answers with a cleartext Refused.
          wire::Envelope refused;
          if (opener_->next_sequence() == 0 && refused.ParseFromArray(payload.data(), static_cast<int>(payload.size())) &&
              refused.has_refused()) {
            return refused;
          }
          return std::nullopt;
        }
        if (opener_) payload = opened_;
        wire::Envelope envelope;
        if (!envelope.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) return std::nullopt;
        return envelope;
      }
      if (!read_some(deadline)) return std::nullopt;
    }
  }

  // True once the other side has closed the connection (EOF or reset) before the deadline;
  // anything it sends meanwhile is discarded.
  bool wait_closed(std::chrono::milliseconds timeout = kWait) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      if (!wait_readable(deadline)) return false;
      char buffer[4096];
      ssize_t n = ::read(socket_.native_handle(), buffer, sizeof buffer);
      if (n <= 0) return true;
    }
  }

  // Sends a Hello for `me` with `challenge` and returns the answer.
  std::optional<wire::Envelope> hello(const LinkIdentity& me, const std::string& challenge) {
    wire::Envelope envelope;
    envelope.set_epoch(me.epoch);
    auto* hello = envelope.mutable_hello();
    hello->set_protocol_version(kProtocolVersion);
    hello->set_vm_id(me.vm_id);
    hello->set_epoch(me.epoch);
    hello->set_role(me.role);
    hello->set_challenge(challenge);
    hello->set_node_name(me.node_name);
    hello->set_cleartext(!me.encryption);
    if (!send(envelope)) return std::nullopt;
    return receive();
  }

  // Runs the connecting side of the handshake with `me`; the AuthProof sent is kept in
  // last_proof(). With `proof_override` that proof is sent instead of the right one; with
  // `proof_key` the right proof is computed under that key instead of the link key.
  bool handshake(const LinkIdentity& me, std::optional<std::string> proof_override = std::nullopt,
                 std::optional<std::string> proof_key = std::nullopt) {
    const std::string challenge = make_challenge();
    auto reply = hello(me, challenge);
    if (!reply || !reply->has_hello_reply()) return false;
    const auto& r = reply->hello_reply();
    last_peer_challenge_ = r.challenge();
    const HandshakeTranscript transcript{kProtocolVersion, me.vm_id,
                                         {me.role, me.epoch, challenge, me.node_name, !me.encryption},
                                         {r.role(), r.epoch(), r.challenge(), r.node_name(), r.cleartext()}};
    const std::string key = link_key(me.psk, me.vm_id);
    last_proof_ = proof_override ? *proof_override
                                 : compute_proof(proof_key.value_or(key), ProofDirection::kFromInitiator, transcript);
    wire::Envelope proof;
    proof.set_epoch(me.epoch);
    proof.mutable_auth_proof()->set_proof(last_proof_);
    if (!send(proof)) return false;
    if (me.encryption && !r.cleartext()) {
      const FrameKeys keys = derive_frame_keys(key, transcript);
      sealer_.emplace(kLinkCipher, keys.initiator_to_acceptor);
      opener_.emplace(kLinkCipher, keys.acceptor_to_initiator);
    }
    return true;
  }
  const std::string& last_proof() const { return last_proof_; }

  void close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
  }

 private:
  bool wait_readable(std::chrono::steady_clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd fd{socket_.native_handle(), POLLIN, 0};
    return ::poll(&fd, 1, static_cast<int>(left.count())) > 0;
  }
  bool read_some(std::chrono::steady_clock::time_point deadline) {
    if (!wait_readable(deadline)) return false;
    auto area = reader_.write_area(4096);
    ssize_t n = ::read(socket_.native_handle(), area.data(), area.size());
    if (n <= 0) return false;
    reader_.commit(static_cast<size_t>(n));
    return true;
  }

  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
  FrameReader reader_{kMaxFramePayload};
  std::string last_peer_challenge_;
  std::string last_proof_;
  std::optional<net::AeadSealer> sealer_;
  std::optional<net::AeadOpener> opener_;
  std::string opened_;
};

// A raw acceptor for testing the connecting side against a hostile listener.
class RawListener {
 public:
  RawListener() : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {}
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  RawPeer accept() { return RawPeer(acceptor_.accept()); }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
};

}  // namespace tandem::replicator::testing
