#include "replicator/transport/tcp_link.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "replicator/transport/envelope_text.h"

namespace tandem::replicator {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
// Before authentication a peer gets no more than this per frame: a stranger must not make us
// allocate 64 MiB.
constexpr uint32_t kMaxHandshakeFrame = 64 * 1024;
}  // namespace

std::string endpoint_text(const tcp::endpoint& endpoint) {
  return endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
}

TcpLink::TcpLink(std::shared_ptr<TcpCore> core, tcp::socket socket, Handshake::Side side, HandshakeDone done)
    : core_(std::move(core)),
      socket_(std::move(socket)),
      timer_(core_->io),
      reader_(kMaxHandshakeFrame),
      handshake_(core_->me, side, core_->issued_challenges),
      handshake_done_(std::move(done)),
      queue_(core_->options.max_queued_bytes) {}

// ---- Link (any thread) ------------------------------------------------------------------

void TcpLink::send(wire::Envelope message) {
  if (!open_.load()) return;
  if (message.epoch() == 0) message.set_epoch(core_->me.epoch);
  OutgoingFrame frame;
  SendQueue::Pushed result;
  try {
    frame.payload = net::serialize_payload(message, "link", kMaxFramePayload - net::kAeadTagBytes);
    std::lock_guard lock(seal_mutex_);
    if (sealer_) sealer_->seal(frame.payload);
    frame.header = net::frame_header(frame.payload);
    result = queue_.push(std::move(frame), /*check_backlog=*/true);
  } catch (const std::exception& e) {
    close(std::string("cannot send ") + body_name(message) + ": " + e.what());
    return;
  }
  pushed(result, /*check_backlog=*/true);
}

void TcpLink::close(const std::string& reason) {
  if (close_requested_.exchange(true)) return;
  open_ = false;
  run_on_io([reason](TcpLink& link) { link.begin_graceful_close(reason); });
}

LinkStats TcpLink::stats() const {
  LinkStats s;
  s.messages_sent = messages_sent_.load();
  s.messages_received = messages_received_.load();
  s.bytes_sent = queue_.bytes_sent();
  s.bytes_received = bytes_received_.load();
  s.stale_epoch_dropped = epochs_.dropped();
  return s;
}

void TcpLink::start() {
  run_on_io([](TcpLink& link) {
    if (link.phase_ != Phase::kReady) return;
    link.phase_ = Phase::kRunning;
    link.queue_.attach_direct(link.socket_.native_handle());
    link.process_frames();
  });
}

template <typename Fn>
void TcpLink::run_on_io(Fn fn) {
  if (core_->io.get_executor().running_in_this_thread()) {
    fn(*this);
    return;
  }
  asio::post(core_->io, [weak = weak_from_this(), fn = std::move(fn)]() mutable {
    if (auto self = weak.lock()) fn(*self);
  });
}

// ---- I/O thread: beginning and ending -----------------------------------------------------

void TcpLink::begin_accepted(net::Admission::Slot slot) {
  peer_.address = remote_text();
  phase_ = Phase::kHandshaking;
  pending_slot_ = std::move(slot);
  arm_handshake_timer();
  set_no_delay();
  apply(handshake_.start());
  read_more();
}

void TcpLink::begin_connecting(const std::string& address) {
  phase_ = Phase::kConnecting;
  peer_.address = address;
  arm_handshake_timer();
}

void TcpLink::connected(const tcp::endpoint& endpoint) {
  peer_.address = endpoint_text(endpoint);
  set_no_delay();
  phase_ = Phase::kHandshaking;
  apply(handshake_.start());
  read_more();
}

void TcpLink::terminate(const std::string& reason) {
  if (phase_ == Phase::kClosed) return;
  const bool was_handshaking = handshaking();
  phase_ = Phase::kClosed;
  open_ = false;
  close_requested_ = true;
  timer_.cancel();
  queue_.detach_direct();  // before the descriptor can be closed (and its number reused)
  boost::system::error_code ignored;
  socket_.close(ignored);
  queue_.drop();
  if (was_handshaking) {
    handshake_failed(reason);
  } else {
    notify_closed(reason);
  }
}

std::string TcpLink::remote_text() const {
  boost::system::error_code ec;
  auto endpoint = socket_.remote_endpoint(ec);
  return ec ? std::string("unknown peer") : endpoint_text(endpoint);
}

void TcpLink::set_no_delay() {
  boost::system::error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
}

// ---- handshake ------------------------------------------------------------------------------

void TcpLink::arm_handshake_timer() {
  auto generation = ++timer_generation_;
  timer_.expires_after(core_->options.handshake_timeout);
  timer_.async_wait([weak = weak_from_this(), generation](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (ec || !self || self->timer_generation_ != generation || !self->handshaking()) return;
    self->terminate("handshake timed out after " + std::to_string(self->core_->options.handshake_timeout.count()) +
                    " ms");
  });
}

void TcpLink::apply(Handshake::Step step) {
  switch (step.outcome) {
    case Handshake::Outcome::kContinue:
      if (step.reply) send_handshake(*step.reply);
      return;
    case Handshake::Outcome::kAuthenticated:
      if (step.reply) send_handshake(*step.reply);
      return authenticated();
    case Handshake::Outcome::kRefused:
      // Tell the peer why (the stream is intact, so a Refused frame is safe), then close once
      // that is flushed.
      if (step.reply) send_handshake(*step.reply);
      phase_ = Phase::kClosing;
      close_requested_ = true;
      handshake_failed(step.reason);
      arm_linger_timer();
      return finish_close_if_flushed();
    case Handshake::Outcome::kFailed:
      return terminate(step.reason);
  }
}

void TcpLink::send_handshake(const wire::Envelope& envelope) {
  enqueue(encode_link_frame(envelope), /*check_backlog=*/false);
}

void TcpLink::leave_handshake() {
  pending_slot_.release();
  handshake_.finish();
}

void TcpLink::authenticated() {
  leave_handshake();
  ++timer_generation_;
  timer_.cancel();
  reader_.set_max_payload(kMaxFramePayload);
  try {
    if (auto keys = handshake_.frame_keys()) {
      std::lock_guard lock(seal_mutex_);
      sealer_ = std::make_unique<net::AeadSealer>(kLinkCipher, keys->send);
      opener_ = std::make_unique<net::AeadOpener>(kLinkCipher, keys->receive);
    }
  } catch (const std::exception& e) {
    return terminate(std::string("cannot set up the frame keys: ") + e.what());
  }
  const std::string address = peer_.address;
  peer_ = handshake_.peer();
  peer_.address = address;
  epochs_.start(peer_.epoch, core_->me.current_epoch);
  phase_ = Phase::kReady;
  open_ = true;
  const bool incoming = handshake_.side() == Handshake::Side::kAcceptor;
  {
    std::lock_guard lock(core_->stats_mutex);
    ++(incoming ? core_->stats.links_accepted : core_->stats.links_connected);
  }
  spdlog::info("link: authenticated {} '{}' ({}, epoch {}) at {}", incoming ? "incoming" : "outgoing",
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

void TcpLink::handshake_failed(const std::string& reason) {
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

// ---- reading --------------------------------------------------------------------------------

void TcpLink::read_more() {
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

void TcpLink::process_frames() {
  while (true) {
    if (phase_ != Phase::kHandshaking && phase_ != Phase::kRunning) return;
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
    if (phase_ == Phase::kRunning && opener_) {
      const uint64_t sequence = opener_->next_sequence();
      if (!opener_->open(payload, opened_)) {
        // Not sealed by the peer as its next frame: the stream is not the peer's any more.
        return terminate("frame " + std::to_string(sequence) + " from " + peer_.address +
                         " failed authentication (forged, altered, replayed, reordered or injected)");
      }
      payload = opened_;
    }
    wire::Envelope envelope;
    if (!envelope.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
      return terminate("bad frame from " + peer_.address + ": invalid protobuf (" + std::to_string(payload.size()) +
                       " bytes)");
    }
    if (phase_ == Phase::kHandshaking) {
      apply(handshake_.on_message(envelope));
    } else {
      deliver(std::move(envelope));
    }
  }
}

void TcpLink::deliver(wire::Envelope&& envelope) {
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
  if (!epochs_.admit(envelope, peer_.address)) return;
  ++messages_received_;
  if (!on_message) return;
  try {
    on_message(std::move(envelope));
  } catch (const std::exception& e) {
    terminate(std::string("message handler failed: ") + e.what());
  }
}

// ---- writing --------------------------------------------------------------------------------

void TcpLink::enqueue(OutgoingFrame frame, bool check_backlog) {
  pushed(queue_.push(std::move(frame), check_backlog), check_backlog);
}

void TcpLink::pushed(SendQueue::Pushed result, bool check_backlog) {
  switch (result) {
    case SendQueue::Pushed::kOverBacklog:
      close("send backlog over " + std::to_string(queue_.max_queued_bytes()) + " bytes");
      return;
    case SendQueue::Pushed::kOnTheWire:
    case SendQueue::Pushed::kQueued:
      break;
    case SendQueue::Pushed::kQueuedWakeWriter:
      if (check_backlog) ++messages_sent_;
      run_on_io([](TcpLink& link) { link.write_queued(); });
      return;
  }
  if (check_backlog) ++messages_sent_;
}

void TcpLink::write_queued() {
  if (writing_ || phase_ == Phase::kClosed) return;
  in_flight_.clear();
  if (!queue_.take(in_flight_)) return;
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
    self->queue_.completed(self->in_flight_bytes_, !ec && self->phase_ != Phase::kClosed);
    if (self->phase_ == Phase::kClosed) return;
    if (ec) return self->terminate("write failed: " + ec.message());
    self->in_flight_.clear();
    self->in_flight_bytes_ = 0;
    self->write_queued();
    self->finish_close_if_flushed();
  });
}

// ---- closing --------------------------------------------------------------------------------

void TcpLink::begin_graceful_close(const std::string& reason) {
  if (phase_ == Phase::kClosing || phase_ == Phase::kClosed) return;
  if (handshaking()) return terminate(reason);
  phase_ = Phase::kClosing;
  open_ = false;
  queue_.detach_direct();  // the I/O thread flushes what is queued, then closes
  notify_closed(reason);
  arm_linger_timer();
  finish_close_if_flushed();
}

void TcpLink::arm_linger_timer() {
  auto generation = ++timer_generation_;
  timer_.expires_after(core_->options.close_linger);
  timer_.async_wait([weak = weak_from_this(), generation](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (ec || !self || self->timer_generation_ != generation || self->phase_ != Phase::kClosing) return;
    self->close_socket();
  });
}

void TcpLink::finish_close_if_flushed() {
  if (phase_ != Phase::kClosing || writing_ || !queue_.empty()) return;
  boost::system::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  close_socket();
}

void TcpLink::close_socket() {
  phase_ = Phase::kClosed;
  ++timer_generation_;
  timer_.cancel();
  queue_.detach_direct();
  boost::system::error_code ignored;
  socket_.close(ignored);
  queue_.drop();
}

void TcpLink::notify_closed(const std::string& reason) {
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

}  // namespace tandem::replicator
