// The TCP replication transport: Boost.Asio on one I/O thread per Transport.
//
// Threading: every socket operation, timer and callback runs on the transport's single I/O
// thread, which serialises them (no strand needed). Only send(), close(), start() and the
// getters are called from other threads: send() appends to a mutex-guarded queue and posts
// one write; the I/O thread writes everything queued in a single gather write. The one
// exception is the direct write: when nothing is queued or being written, send() on a
// running link writes the frame itself with a non-blocking sendmsg(2) under the queue mutex
// (see try_direct_write_locked), which is how log batches and acks usually leave.
//
// Lifetime: links share the io_context with the transport through Core, so a Link the user
// still holds after the transport is gone stays valid (closed and inert). Handlers posted
// from user threads hold only weak pointers, so nothing left queued in a stopped io_context
// keeps a link alive.
// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio.hpp>

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "replicator/transport/auth.h"
#include "replicator/transport/frame.h"
#include "replicator/transport/link.h"

namespace tandem::replicator {

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Before authentication a peer gets no more than this per frame: a stranger must not make
// us allocate 64 MiB.
constexpr uint32_t kMaxHandshakeFrame = 64 * 1024;
constexpr size_t kMaxNameBytes = 256;
// Stale-epoch drops are logged for the first few, then once in this many.
constexpr uint64_t kStaleLogEvery = 1000;

// Peer-supplied text as it may appear in a log line: printable ASCII, bounded.
std::string printable(std::string_view text, size_t max = 64) {
  std::string out;
  for (char c : text.substr(0, max)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (text.size() > max) out += "...";
  return out;
}

std::string endpoint_text(const tcp::endpoint& endpoint) {
  return endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
}

const char* body_name(const wire::Envelope& envelope) {
  switch (envelope.body_case()) {
    case wire::Envelope::kHello: return "Hello";
    case wire::Envelope::kHelloReply: return "HelloReply";
    case wire::Envelope::kAuthProof: return "AuthProof";
    case wire::Envelope::kRefused: return "Refused";
    case wire::Envelope::kSyncChunk: return "SyncChunk";
    case wire::Envelope::kSyncResult: return "SyncResult";
    case wire::Envelope::kSyncAck: return "SyncAck";
    case wire::Envelope::kBatch: return "LogBatch";
    case wire::Envelope::kAck: return "Ack";
    case wire::Envelope::kHeartbeat: return "Heartbeat";
    case wire::Envelope::kDivergence: return "DivergenceReport";
    case wire::Envelope::kHandover: return "Handover";
    case wire::Envelope::BODY_NOT_SET: return "an envelope without a body";
  }
  return "an unknown message";
}

class TcpLink;

// State shared by a transport and its links; outlives both as long as either needs it.
struct Core {
  Core(LinkIdentity identity, TransportOptions opts) : me(std::move(identity)), options(opts) {}

  asio::io_context io;
  const LinkIdentity me;
  const TransportOptions options;

  // I/O thread only.
  size_t pending_handshakes = 0;
  std::set<std::string> issued_challenges;  // acceptor challenges still awaiting a proof
  std::vector<std::weak_ptr<TcpLink>> links;
  bool stopped = false;

  mutable std::mutex stats_mutex;
  TransportStats stats;

  void count_refusal(const std::string& reason) {
    std::lock_guard lock(stats_mutex);
    ++stats.handshakes_refused;
    stats.last_refusal = reason;
  }
};

class TcpLink final : public Link, public std::enable_shared_from_this<TcpLink> {
 public:
  using HandshakeDone = std::function<void(std::shared_ptr<Link>, std::string)>;

  enum class Phase { kConnecting, kAwaitHello, kAwaitHelloReply, kAwaitAuthProof, kReady, kRunning, kClosing, kClosed };

  TcpLink(std::shared_ptr<Core> core, tcp::socket socket, bool acceptor_side, HandshakeDone done)
      : core_(std::move(core)),
        socket_(std::move(socket)),
        timer_(core_->io),
        reader_(kMaxHandshakeFrame),
        acceptor_side_(acceptor_side),
        handshake_done_(std::move(done)) {}

  ~TcpLink() override = default;

  // ---- Link (any thread) ----
  void send(wire::Envelope message) override {
    if (!open_.load()) return;
    if (message.epoch() == 0) message.set_epoch(core_->me.epoch);
    OutgoingFrame frame;
    try {
      frame = encode_link_frame(message);
    } catch (const std::exception& e) {
      close(std::string("cannot send ") + body_name(message) + ": " + e.what());
      return;
    }
    enqueue(std::move(frame), /*check_backlog=*/true);
  }

  void close(const std::string& reason) override {
    if (close_requested_.exchange(true)) return;
    open_ = false;
    run_on_io([reason](TcpLink& link) { link.begin_graceful_close(reason); });
  }

  const PeerInfo& peer() const override { return peer_; }
  bool is_open() const override { return open_.load(); }
  uint64_t queued_bytes() const override { return queued_bytes_.load(); }

  LinkStats stats() const override {
    LinkStats s;
    s.messages_sent = messages_sent_.load();
    s.messages_received = messages_received_.load();
    s.bytes_sent = bytes_sent_.load();
    s.bytes_received = bytes_received_.load();
    s.stale_epoch_dropped = stale_dropped_.load();
    return s;
  }

  void start() override {
    run_on_io([](TcpLink& link) {
      if (link.phase_ != Phase::kReady) return;
      link.phase_ = Phase::kRunning;
      link.set_direct_fd(link.socket_.native_handle());
      link.process_frames();
    });
  }

  // ---- I/O thread ----
  void begin_accepted() {
    peer_.address = remote_text();
    phase_ = Phase::kAwaitHello;
    counted_pending_ = true;
    ++core_->pending_handshakes;
    arm_handshake_timer();
    set_no_delay();
    read_more();
  }

  void begin_connect(const std::string& host, uint16_t port) {
    phase_ = Phase::kConnecting;
    peer_.address = host + ":" + std::to_string(port);
    arm_handshake_timer();
    auto resolver = std::make_shared<tcp::resolver>(core_->io);
    resolver->async_resolve(
        host, std::to_string(port),
        [self = shared_from_this(), resolver](const boost::system::error_code& ec, tcp::resolver::results_type results) {
          if (self->phase_ != Phase::kConnecting) return;
          if (ec) return self->terminate("cannot resolve " + self->peer_.address + ": " + ec.message());
          asio::async_connect(self->socket_, results,
                              [self](const boost::system::error_code& ec2, const tcp::endpoint& endpoint) {
                                if (self->phase_ != Phase::kConnecting) return;
                                if (ec2) {
                                  return self->terminate("cannot connect to " + self->peer_.address + ": " +
                                                         ec2.message());
                                }
                                self->peer_.address = endpoint_text(endpoint);
                                self->send_hello();
                              });
        });
  }

  // Closes at once, without flushing (errors, timeouts, transport stop).
  void terminate(const std::string& reason) {
    if (phase_ == Phase::kClosed) return;
    bool was_handshaking = handshaking();
    phase_ = Phase::kClosed;
    open_ = false;
    close_requested_ = true;
    timer_.cancel();
    set_direct_fd(-1);  // before the descriptor can be closed (and its number reused)
    boost::system::error_code ignored;
    socket_.close(ignored);
    drop_queue();
    if (was_handshaking) {
      handshake_failed(reason);
    } else {
      notify_closed(reason);
    }
  }

 private:
  bool handshaking() const { return phase_ < Phase::kReady; }

  std::string remote_text() const {
    boost::system::error_code ec;
    auto endpoint = socket_.remote_endpoint(ec);
    return ec ? std::string("unknown peer") : endpoint_text(endpoint);
  }

  void set_no_delay() {
    boost::system::error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
  }

  // Runs `fn` on the I/O thread: inline when already there, else posted with a weak pointer.
  template <typename Fn>
  void run_on_io(Fn fn) {
    if (core_->io.get_executor().running_in_this_thread()) {
      fn(*this);
      return;
    }
    asio::post(core_->io, [weak = weak_from_this(), fn = std::move(fn)]() mutable {
      if (auto self = weak.lock()) fn(*self);
    });
  }

  // ---- handshake ----
  void arm_handshake_timer() {
    auto generation = ++timer_generation_;
    timer_.expires_after(core_->options.handshake_timeout);
    timer_.async_wait([weak = weak_from_this(), generation](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self || self->timer_generation_ != generation || !self->handshaking()) return;
      self->terminate("handshake timed out after " + std::to_string(self->core_->options.handshake_timeout.count()) +
                      " ms");
    });
  }

  void send_handshake(wire::Envelope envelope) {
    envelope.set_epoch(core_->me.epoch);
    enqueue(encode_link_frame(envelope), /*check_backlog=*/false);
  }

  void send_hello() {
    set_no_delay();
    my_challenge_ = make_challenge();
    wire::Envelope envelope;
    auto* hello = envelope.mutable_hello();
    hello->set_protocol_version(kProtocolVersion);
    hello->set_vm_id(core_->me.vm_id);
    hello->set_epoch(core_->me.epoch);
    hello->set_role(core_->me.role);
    hello->set_challenge(my_challenge_);
    hello->set_node_name(core_->me.node_name);
    phase_ = Phase::kAwaitHelloReply;
    send_handshake(std::move(envelope));
    read_more();
  }

  // Checks what both Hello and HelloReply carry; returns the refusal reason or "".
  std::string check_announcement(uint32_t version, const std::string& vm_id, int role,
                                 const std::string& challenge, const std::string& node_name) const {
    if (version != kProtocolVersion) {
      return "protocol version " + std::to_string(version) + " not supported (this side speaks " +
             std::to_string(kProtocolVersion) + ")";
    }
    if (vm_id != core_->me.vm_id) {
      return "vm_id mismatch (peer '" + printable(vm_id) + "', this side '" + printable(core_->me.vm_id) + "')";
    }
    if (!wire::Role_IsValid(role)) return "unknown role " + std::to_string(role);
    if (challenge.size() != kChallengeBytes) {
      return "challenge of " + std::to_string(challenge.size()) + " bytes (expected " +
             std::to_string(kChallengeBytes) + ")";
    }
    if (node_name.size() > kMaxNameBytes) return "node name longer than " + std::to_string(kMaxNameBytes) + " bytes";
    return "";
  }

  // The handshake as this side saw it, which both proofs cover (auth.h).
  HandshakeTranscript transcript() const {
    const Announcement mine{core_->me.role, core_->me.epoch, my_challenge_, core_->me.node_name};
    const Announcement theirs{peer_.role, peer_.epoch, peer_challenge_, peer_.node_name};
    return {kProtocolVersion, core_->me.vm_id, acceptor_side_ ? theirs : mine, acceptor_side_ ? mine : theirs};
  }

  static std::string role_pair_refusal(wire::Role initiator, wire::Role acceptor) {
    return "role pair " + wire::Role_Name(initiator) + " -> " + wire::Role_Name(acceptor) +
           " not allowed (only a primary opens a link, to a secondary or a primary)";
  }

  void on_hello(const wire::Envelope& envelope) {
    if (!envelope.has_hello()) {
      if (envelope.has_refused()) return terminate("refused by peer: " + printable(envelope.refused().reason(), 200));
      return refuse(std::string("expected Hello, got ") + body_name(envelope));
    }
    const auto& hello = envelope.hello();
    if (auto reason = check_announcement(hello.protocol_version(), hello.vm_id(), hello.role(), hello.challenge(),
                                         hello.node_name());
        !reason.empty()) {
      return refuse(reason);
    }
    // A challenge we issued ourselves, sent back to us. Since version 3 the proofs bind the
    // direction, so this no longer yields a useful proof; it is refused all the same.
    if (core_->issued_challenges.count(hello.challenge())) return refuse("reflected challenge");
    // Before any proof is computed: a peer in a role that may not open this link gets nothing.
    if (!role_pair_allowed(hello.role(), core_->me.role)) return refuse(role_pair_refusal(hello.role(), core_->me.role));
    peer_.node_name = hello.node_name();
    peer_.epoch = hello.epoch();
    peer_.role = hello.role();
    peer_challenge_ = hello.challenge();
    my_challenge_ = make_challenge();
    core_->issued_challenges.insert(my_challenge_);

    wire::Envelope reply_envelope;
    auto* reply = reply_envelope.mutable_hello_reply();
    reply->set_protocol_version(kProtocolVersion);
    reply->set_vm_id(core_->me.vm_id);
    reply->set_epoch(core_->me.epoch);
    reply->set_role(core_->me.role);
    reply->set_challenge(my_challenge_);
    reply->set_proof(compute_proof(core_->me.psk, ProofDirection::kFromAcceptor, transcript()));
    reply->set_node_name(core_->me.node_name);
    send_handshake(std::move(reply_envelope));
    phase_ = Phase::kAwaitAuthProof;
  }

  void on_auth_proof(const wire::Envelope& envelope) {
    if (!envelope.has_auth_proof()) {
      if (envelope.has_refused()) return terminate("refused by peer: " + printable(envelope.refused().reason(), 200));
      return refuse(std::string("expected AuthProof, got ") + body_name(envelope));
    }
    auto expected = compute_proof(core_->me.psk, ProofDirection::kFromInitiator, transcript());
    if (!proofs_equal(expected, envelope.auth_proof().proof())) {
      // The peer's proof is over our fresh challenge: a wrong key, a replayed or a forged proof.
      return refuse("authentication failed", "wrong PSK (or a replayed/forged proof)");
    }
    authenticated();
  }

  void on_hello_reply(const wire::Envelope& envelope) {
    if (!envelope.has_hello_reply()) {
      if (envelope.has_refused()) return terminate("refused by peer: " + printable(envelope.refused().reason(), 200));
      return refuse(std::string("expected HelloReply, got ") + body_name(envelope));
    }
    const auto& reply = envelope.hello_reply();
    if (auto reason = check_announcement(reply.protocol_version(), reply.vm_id(), reply.role(), reply.challenge(),
                                         reply.node_name());
        !reason.empty()) {
      return refuse(reason);
    }
    if (reply.challenge() == my_challenge_) return refuse("reflected challenge");
    if (!role_pair_allowed(core_->me.role, reply.role())) return refuse(role_pair_refusal(core_->me.role, reply.role()));
    peer_.node_name = reply.node_name();
    peer_.epoch = reply.epoch();
    peer_.role = reply.role();
    peer_challenge_ = reply.challenge();
    auto expected = compute_proof(core_->me.psk, ProofDirection::kFromAcceptor, transcript());
    if (!proofs_equal(expected, reply.proof())) {
      return refuse("authentication failed", "wrong PSK: the peer's proof does not verify");
    }

    wire::Envelope proof_envelope;
    proof_envelope.mutable_auth_proof()->set_proof(
        compute_proof(core_->me.psk, ProofDirection::kFromInitiator, transcript()));
    send_handshake(std::move(proof_envelope));
    authenticated();
  }

  void leave_handshake() {
    if (counted_pending_) {
      counted_pending_ = false;
      --core_->pending_handshakes;
    }
    if (!my_challenge_.empty()) core_->issued_challenges.erase(my_challenge_);
  }

  void authenticated() {
    leave_handshake();
    ++timer_generation_;
    timer_.cancel();
    reader_.set_max_payload(kMaxFramePayload);
    epoch_floor_ = peer_.epoch;
    phase_ = Phase::kReady;
    open_ = true;
    {
      std::lock_guard lock(core_->stats_mutex);
      ++(acceptor_side_ ? core_->stats.links_accepted : core_->stats.links_connected);
    }
    spdlog::info("link: authenticated {} '{}' ({}, epoch {}) at {}", acceptor_side_ ? "incoming" : "outgoing",
                 printable(peer_.node_name), wire::Role_Name(peer_.role), peer_.epoch, peer_.address);
    auto done = std::move(handshake_done_);
    handshake_done_ = nullptr;
    if (!done) return;
    try {
      done(shared_from_this(), "");
    } catch (const std::exception& e) {
      terminate(std::string("new-link handler failed: ") + e.what());
    }
  }

  // Refuses the peer: logs, tells it why (the stream is intact, so a Refused frame is safe),
  // then closes once that is flushed. `log_reason` may say more than the peer is told.
  void refuse(const std::string& reason, const std::string& log_reason = "") {
    if (!handshaking()) return terminate("protocol error: " + reason);
    wire::Envelope envelope;
    envelope.mutable_refused()->set_reason(reason);
    send_handshake(std::move(envelope));
    phase_ = Phase::kClosing;
    close_requested_ = true;
    handshake_failed(log_reason.empty() ? reason : log_reason);
    arm_linger_timer();
    finish_close_if_flushed();
  }

  void handshake_failed(const std::string& reason) {
    leave_handshake();
    core_->count_refusal(reason);
    spdlog::warn("link: handshake with {} failed: {}", peer_.address, reason);
    auto done = std::move(handshake_done_);
    handshake_done_ = nullptr;
    if (!done) return;
    try {
      done(nullptr, reason);
    } catch (const std::exception& e) {
      spdlog::error("link: connect handler threw: {}", e.what());
    }
  }

  // ---- reading ----
  void read_more() {
    if (reading_ || phase_ == Phase::kClosed || phase_ == Phase::kClosing) return;
    reading_ = true;
    auto area = reader_.write_area();
    socket_.async_read_some(asio::buffer(area.data(), area.size()),
                            [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
                              self->reading_ = false;
                              if (self->phase_ == Phase::kClosed || self->phase_ == Phase::kClosing) return;
                              if (ec) {
                                return self->terminate(ec == asio::error::eof ? "peer closed the connection"
                                                                              : "read failed: " + ec.message());
                              }
                              self->reader_.commit(n);
                              self->bytes_received_ += n;
                              self->process_frames();
                            });
  }

  void process_frames() {
    while (true) {
      if (phase_ == Phase::kReady || phase_ == Phase::kClosing || phase_ == Phase::kClosed) return;
      std::string_view payload;
      std::string error;
      switch (reader_.next(payload, error)) {
        case FrameReader::Status::kNeedMore:
          return read_more();
        case FrameReader::Status::kError:
          // The stream cannot be trusted any more: no reply, just close.
          return terminate("bad frame from " + peer_.address + ": " + error);
        case FrameReader::Status::kFrame:
          break;
      }
      wire::Envelope envelope;
      if (!envelope.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
        return terminate("bad frame from " + peer_.address + ": invalid protobuf (" +
                         std::to_string(payload.size()) + " bytes)");
      }
      dispatch(std::move(envelope));
    }
  }

  void dispatch(wire::Envelope&& envelope) {
    switch (phase_) {
      case Phase::kAwaitHello: return on_hello(envelope);
      case Phase::kAwaitHelloReply: return on_hello_reply(envelope);
      case Phase::kAwaitAuthProof: return on_auth_proof(envelope);
      case Phase::kRunning: return deliver(std::move(envelope));
      default: return;
    }
  }

  void deliver(wire::Envelope&& envelope) {
    switch (envelope.body_case()) {
      case wire::Envelope::kHello:
      case wire::Envelope::kHelloReply:
      case wire::Envelope::kAuthProof:
      case wire::Envelope::BODY_NOT_SET:
        return terminate(std::string("protocol error: ") + body_name(envelope) + " after authentication");
      case wire::Envelope::kRefused:
        return terminate("refused by peer: " + printable(envelope.refused().reason(), 200));
      default:
        break;
    }
    if (envelope.epoch() < epoch_floor_) {
      uint64_t dropped = ++stale_dropped_;
      if (dropped <= 10 || dropped % kStaleLogEvery == 0) {
        spdlog::warn("link: stale epoch: dropped {} of epoch {} from {} (current epoch {}; {} dropped so far)",
                     body_name(envelope), envelope.epoch(), peer_.address, epoch_floor_, dropped);
      }
      return;
    }
    epoch_floor_ = envelope.epoch();
    ++messages_received_;
    if (!on_message) return;
    try {
      on_message(std::move(envelope));
    } catch (const std::exception& e) {
      terminate(std::string("message handler failed: ") + e.what());
    }
  }

  // ---- writing ----
  void enqueue(OutgoingFrame frame, bool check_backlog) {
    const size_t size = frame.size();
    bool over_backlog = false;
    bool post_write = false;
    {
      std::lock_guard lock(queue_mutex_);
      if (check_backlog && queued_bytes_.load() + size > core_->options.max_queued_bytes) {
        over_backlog = true;
      } else if (!write_scheduled_ && try_direct_write_locked(frame)) {
        // On the wire already.
      } else {
        queued_bytes_ += size - frame.written;
        queue_.push_back(std::move(frame));
        post_write = !write_scheduled_;
        write_scheduled_ = true;
      }
    }
    if (over_backlog) {
      close("send backlog over " + std::to_string(core_->options.max_queued_bytes) + " bytes");
      return;
    }
    if (check_backlog) ++messages_sent_;
    if (post_write) run_on_io([](TcpLink& link) { link.write_queued(); });
  }

  // The output rule makes the primary's console wait for the secondary's ack of each log
  // batch, so every hand-off on that path is latency a client sees: waking the I/O thread to
  // write a small frame costs tens of µs (much more on a busy host). When nothing is queued
  // or being written (write_scheduled_ false), the calling thread writes the frame itself,
  // as much as the socket takes without blocking; the rest, or all of it on any error, goes
  // the usual way through the I/O thread, which also reports the error. True when the whole
  // frame went out. The descriptor cannot be closed meanwhile: it is withdrawn under
  // queue_mutex_ before the I/O thread closes the socket.
  bool try_direct_write_locked(OutgoingFrame& frame) {
    if (direct_fd_ < 0) return false;
    iovec parts[2] = {{frame.header.data(), frame.header.size()}, {frame.payload.data(), frame.payload.size()}};
    msghdr message{};
    message.msg_iov = parts;
    message.msg_iovlen = frame.payload.empty() ? 1 : 2;
    const ssize_t n = ::sendmsg(direct_fd_, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes_sent_ += static_cast<uint64_t>(n);
    frame.written = static_cast<size_t>(n);
    return frame.written == frame.size();
  }

  // -1 stops direct writes (closing: from then on only the I/O thread touches the socket).
  void set_direct_fd(int fd) {
    std::lock_guard lock(queue_mutex_);
    direct_fd_ = fd;
  }

  void write_queued() {
    if (writing_ || phase_ == Phase::kClosed) return;
    {
      std::lock_guard lock(queue_mutex_);
      if (queue_.empty()) {
        write_scheduled_ = false;
        return;
      }
      in_flight_.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
      queue_.clear();
    }
    buffers_.clear();
    in_flight_bytes_ = 0;
    for (const auto& frame : in_flight_) {
      // A frame a direct write began has its first `written` bytes on the wire already.
      const size_t header_done = std::min(frame.written, frame.header.size());
      const size_t payload_done = frame.written - header_done;
      if (header_done < frame.header.size()) {
        buffers_.emplace_back(frame.header.data() + header_done, frame.header.size() - header_done);
      }
      if (payload_done < frame.payload.size()) {
        buffers_.emplace_back(frame.payload.data() + payload_done, frame.payload.size() - payload_done);
      }
      in_flight_bytes_ += frame.size() - frame.written;
    }
    writing_ = true;
    asio::async_write(socket_, buffers_, [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
      self->writing_ = false;
      self->queued_bytes_ -= self->in_flight_bytes_;
      if (self->phase_ == Phase::kClosed) return;
      if (ec) return self->terminate("write failed: " + ec.message());
      self->bytes_sent_ += self->in_flight_bytes_;
      self->in_flight_.clear();
      self->in_flight_bytes_ = 0;
      self->write_queued();
      self->finish_close_if_flushed();
    });
  }

  void drop_queue() {
    std::lock_guard lock(queue_mutex_);
    uint64_t dropped = 0;
    for (const auto& frame : queue_) dropped += frame.size() - frame.written;
    queue_.clear();
    queued_bytes_ -= dropped;
    write_scheduled_ = false;
  }

  // ---- closing ----
  void begin_graceful_close(const std::string& reason) {
    if (phase_ == Phase::kClosing || phase_ == Phase::kClosed) return;
    if (handshaking()) return terminate(reason);
    phase_ = Phase::kClosing;
    open_ = false;
    set_direct_fd(-1);  // the I/O thread flushes what is queued, then closes
    notify_closed(reason);
    arm_linger_timer();
    finish_close_if_flushed();
  }

  void arm_linger_timer() {
    auto generation = ++timer_generation_;
    timer_.expires_after(core_->options.close_linger);
    timer_.async_wait([weak = weak_from_this(), generation](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self || self->timer_generation_ != generation || self->phase_ != Phase::kClosing) return;
      self->close_socket();
    });
  }

  void finish_close_if_flushed() {
    if (phase_ != Phase::kClosing || writing_) return;
    {
      std::lock_guard lock(queue_mutex_);
      if (!queue_.empty()) return;
    }
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    close_socket();
  }

  void close_socket() {
    phase_ = Phase::kClosed;
    ++timer_generation_;
    timer_.cancel();
    set_direct_fd(-1);
    boost::system::error_code ignored;
    socket_.close(ignored);
    drop_queue();
  }

  void notify_closed(const std::string& reason) {
    if (closed_notified_) return;
    closed_notified_ = true;
    spdlog::info("link: link to {} closed: {}", peer_.address, reason);
    auto callback = std::move(on_closed);
    on_closed = nullptr;
    on_message = nullptr;  // drop captured state early; nothing more is delivered
    if (callback) {
      try {
        callback(reason);
      } catch (const std::exception& e) {
        spdlog::error("link: on_closed handler threw: {}", e.what());
      }
    }
  }

  std::shared_ptr<Core> core_;  // first: the io_context must outlive the socket and timer
  tcp::socket socket_;
  asio::steady_timer timer_;
  uint64_t timer_generation_ = 0;
  FrameReader reader_;
  const bool acceptor_side_;
  HandshakeDone handshake_done_;

  // I/O thread only.
  Phase phase_ = Phase::kConnecting;
  std::string my_challenge_;
  std::string peer_challenge_;
  bool counted_pending_ = false;
  bool reading_ = false;
  bool writing_ = false;
  bool closed_notified_ = false;
  uint64_t epoch_floor_ = 0;
  std::vector<OutgoingFrame> in_flight_;
  std::vector<asio::const_buffer> buffers_;
  uint64_t in_flight_bytes_ = 0;

  PeerInfo peer_;  // written during the handshake, read-only once the Link is handed out

  std::atomic<bool> open_{false};
  std::atomic<bool> close_requested_{false};
  std::mutex queue_mutex_;
  std::deque<OutgoingFrame> queue_;
  bool write_scheduled_ = false;  // guarded by queue_mutex_: the I/O thread has writing to do
  int direct_fd_ = -1;            // guarded by queue_mutex_: the socket, while direct writes may use it
  std::atomic<uint64_t> queued_bytes_{0};

  std::atomic<uint64_t> messages_sent_{0}, messages_received_{0}, bytes_sent_{0}, bytes_received_{0},
      stale_dropped_{0};
};

class TcpTransport final : public Transport {
 public:
  TcpTransport(const LinkIdentity& me, TransportOptions options)
      : core_(std::make_shared<Core>(me, options)), acceptor_(core_->io), retry_timer_(core_->io) {
    work_.emplace(core_->io.get_executor());
    // The thread holds the core too, so a transport destroyed from its own callback (which
    // it must not be) still leaves the io_context alive until run() returns.
    thread_ = std::thread([core = core_] {
      while (true) {
        try {
          core->io.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("link: I/O thread caught: {}", e.what());
        }
      }
    });
  }

  ~TcpTransport() override { stop(); }

  void listen(const std::string& host, uint16_t port, std::function<void(std::shared_ptr<Link>)> on_link) override {
    if (stopped_) throw std::logic_error("link: listen on a stopped transport");
    if (listening_.exchange(true)) throw std::logic_error("link: the transport is already listening");
    tcp::endpoint endpoint;
    boost::system::error_code ec;
    // The acceptor is not used by the I/O thread before the post below.
    auto address = asio::ip::make_address(host, ec);
    if (!ec) {
      endpoint = tcp::endpoint(address, port);
      acceptor_.open(endpoint.protocol(), ec);
      if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
      if (!ec) acceptor_.bind(endpoint, ec);
      if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      listening_ = false;  // the caller may retry elsewhere
      throw std::system_error(std::error_code(ec.value(), std::system_category()),
                              "link: cannot listen on " + host + ":" + std::to_string(port));
    }
    port_ = acceptor_.local_endpoint().port();
    on_link_ = std::move(on_link);
    spdlog::info("link: listening on {}", endpoint_text(acceptor_.local_endpoint()));
    asio::post(core_->io, [this] { accept_next(); });
  }

  uint16_t bound_port() const override { return port_.load(); }

  void connect(const std::string& host, uint16_t port,
               std::function<void(std::shared_ptr<Link>, std::string error)> done) override {
    if (stopped_) {
      done(nullptr, "transport stopped");
      return;
    }
    asio::post(core_->io, [this, host, port, done = std::move(done)]() mutable {
      if (core_->stopped) return done(nullptr, "transport stopped");
      auto link = std::make_shared<TcpLink>(core_, tcp::socket(core_->io), /*acceptor_side=*/false, std::move(done));
      track(link);
      link->begin_connect(host, port);
    });
  }

  TransportStats stats() const override {
    std::lock_guard lock(core_->stats_mutex);
    return core_->stats;
  }

  void stop() override {
    if (stopped_.exchange(true)) return;
    auto shut_down = [core = core_, this] {
      core->stopped = true;
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      retry_timer_.cancel();
      for (auto& weak : core->links) {
        if (auto link = weak.lock()) link->terminate("transport stopped");
      }
      core->links.clear();
    };
    if (core_->io.get_executor().running_in_this_thread()) {
      spdlog::error("link: Transport::stop() called from a transport callback; the I/O thread is left to finish");
      shut_down();
      work_.reset();
      if (thread_.joinable()) thread_.detach();
      return;
    }
    asio::post(core_->io, shut_down);
    work_.reset();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void track(const std::shared_ptr<TcpLink>& link) {
    auto& links = core_->links;
    std::erase_if(links, [](const std::weak_ptr<TcpLink>& weak) { return weak.expired(); });
    links.push_back(link);
  }

  void accept_next() {
    if (core_->stopped) return;
    acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || core_->stopped) return;
      if (ec) {
        // E.g. out of file descriptors: keep the listener alive and try again shortly.
        spdlog::warn("link: accept failed: {}", ec.message());
        retry_timer_.expires_after(std::chrono::milliseconds(100));
        retry_timer_.async_wait([this](const boost::system::error_code& wait_ec) {
          if (!wait_ec) accept_next();
        });
        return;
      }
      if (core_->pending_handshakes >= core_->options.max_pending_handshakes) {
        boost::system::error_code ignored;
        auto remote = socket.remote_endpoint(ignored);
        std::string reason = "too many pending handshakes (" + std::to_string(core_->pending_handshakes) + ")";
        core_->count_refusal(reason);
        spdlog::warn("link: refusing {}: {}", endpoint_text(remote), reason);
        socket.close(ignored);
      } else {
        auto on_link = on_link_;
        auto link = std::make_shared<TcpLink>(core_, std::move(socket), /*acceptor_side=*/true,
                                              [on_link](std::shared_ptr<Link> link, const std::string& error) {
                                                if (link && error.empty() && on_link) on_link(std::move(link));
                                              });
        track(link);
        link->begin_accepted();
      }
      accept_next();
    });
  }

  std::shared_ptr<Core> core_;  // first: outlives the acceptor and timer
  tcp::acceptor acceptor_;
  asio::steady_timer retry_timer_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  std::function<void(std::shared_ptr<Link>)> on_link_;
  std::atomic<uint16_t> port_{0};
  std::atomic<bool> listening_{false};
  std::atomic<bool> stopped_{false};
};

}  // namespace

std::unique_ptr<Transport> make_tcp_transport(const LinkIdentity& me, TransportOptions options) {
  if (me.vm_id.empty()) throw std::invalid_argument("link: the identity has no vm_id");
  if (me.vm_id.size() > kMaxNameBytes) throw std::invalid_argument("link: vm_id is longer than 256 bytes");
  if (me.node_name.size() > kMaxNameBytes) throw std::invalid_argument("link: node_name is longer than 256 bytes");
  if (me.psk.size() < kMinPskBytes) {
    throw std::invalid_argument("link: the pre-shared key has " + std::to_string(me.psk.size()) +
                                " bytes; at least " + std::to_string(kMinPskBytes) + " are required");
  }
  if (options.handshake_timeout.count() <= 0) throw std::invalid_argument("link: handshake_timeout must be positive");
  return std::make_unique<TcpTransport>(me, options);
}

}  // namespace tandem::replicator
