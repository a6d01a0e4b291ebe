#pragma once
// The TCP link: one authenticated connection of the TCP transport (tcp_transport.cpp makes
// them: the acceptor and the connector). It runs the Handshake over the socket, then reads
// frames, opens them (AEAD, auth.h) and delivers envelopes through the EpochFilter, seals and
// writes through the SendQueue, and closes gracefully. A frame that does not open (forged,
// altered, replayed, reordered, injected) closes the link at once with that reason.
//
// Threading: every socket operation, timer and callback runs on the transport's single I/O
// thread, which serialises them (no strand needed). Only send(), close(), start() and the
// getters are called from other threads: send() pushes to the SendQueue, which either writes
// the frame at once (the direct write) or queues it and posts one write; the I/O thread writes
// everything queued in a single gather write.
//
// Lifetime: links share the io_context with the transport through TcpCore, so a Link the user
// still holds after the transport is gone stays valid (closed and inert). Handlers posted from
// user threads hold only weak pointers, so nothing left queued in a stopped io_context keeps a
// link alive.
// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "net/admission.h"
#include "net/aead.h"
#include "replicator/transport/epoch_filter.h"
#include "replicator/transport/frame.h"
#include "replicator/transport/handshake.h"
#include "replicator/transport/link.h"
#include "replicator/transport/send_queue.h"

namespace tandem::replicator {

class TcpLink;

// State shared by a transport and its links; outlives both as long as either needs it.
struct TcpCore {
  TcpCore(LinkIdentity identity, TransportOptions opts)
      : me(std::move(identity)),
        options(opts),
        admission({opts.max_pending_handshakes, opts.max_pending_handshakes_per_address, opts.allow}) {}

  boost::asio::io_context io;
  const LinkIdentity me;
  const TransportOptions options;

  // Accepted connections not yet authenticated: per address and in all, and the allow-list.
  net::Admission admission;
  // I/O thread only.
  IssuedChallenges issued_challenges;  // acceptor challenges still awaiting a proof
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

std::string endpoint_text(const boost::asio::ip::tcp::endpoint& endpoint);

class TcpLink final : public Link, public std::enable_shared_from_this<TcpLink> {
 public:
  using tcp = boost::asio::ip::tcp;
  // Runs once when the handshake ends: the authenticated link and "", or nullptr and why.
  using HandshakeDone = std::function<void(std::shared_ptr<Link>, std::string)>;

  TcpLink(std::shared_ptr<TcpCore> core, tcp::socket socket, Handshake::Side side, HandshakeDone done);
  ~TcpLink() override = default;

  // ---- Link (any thread) ----
  void send(wire::Envelope message) override;
  void close(const std::string& reason) override;
  const PeerInfo& peer() const override { return peer_; }
  bool is_open() const override { return open_.load(); }
  uint64_t queued_bytes() const override { return queue_.queued_bytes(); }
  LinkStats stats() const override;
  void start() override;

  // ---- I/O thread (the acceptor and the connector) ----
  // An accepted socket: the acceptor side of the handshake begins.
  void begin_accepted(net::Admission::Slot slot);
  // A socket the connector is about to connect to `address` ("host:port"); the handshake
  // timeout covers the connection too.
  void begin_connecting(const std::string& address);
  bool connecting() const { return phase_ == Phase::kConnecting; }
  tcp::socket& socket() { return socket_; }
  // The connector's socket is connected: the initiator side of the handshake begins.
  void connected(const tcp::endpoint& endpoint);
  // Closes at once, without flushing (errors, timeouts, transport stop).
  void terminate(const std::string& reason);

 private:
  enum class Phase { kConnecting, kHandshaking, kReady, kRunning, kClosing, kClosed };

  bool handshaking() const { return phase_ < Phase::kReady; }
  std::string remote_text() const;
  void set_no_delay();
  // Runs `fn` on the I/O thread: inline when already there, else posted with a weak pointer.
  template <typename Fn>
  void run_on_io(Fn fn);

  // handshake
  void arm_handshake_timer();
  void apply(Handshake::Step step);
  void send_handshake(const wire::Envelope& envelope);
  void leave_handshake();
  void authenticated();
  void handshake_failed(const std::string& reason);

  // reading
  void read_more();
  void process_frames();
  void deliver(wire::Envelope&& envelope);

  // writing
  void enqueue(OutgoingFrame frame, bool check_backlog);
  // What enqueue does once the queue answered.
  void pushed(SendQueue::Pushed result, bool check_backlog);
  void write_queued();

  // closing
  void begin_graceful_close(const std::string& reason);
  void arm_linger_timer();
  void finish_close_if_flushed();
  void close_socket();
  void notify_closed(const std::string& reason);

  std::shared_ptr<TcpCore> core_;  // first: the io_context must outlive the socket and timer
  tcp::socket socket_;
  boost::asio::steady_timer timer_;
  uint64_t timer_generation_ = 0;
  FrameReader reader_;
  Handshake handshake_;
  HandshakeDone handshake_done_;

  // I/O thread only.
  Phase phase_ = Phase::kConnecting;
  net::Admission::Slot pending_slot_;  // an accepted link's admission, until it authenticates
  bool reading_ = false;
  bool writing_ = false;
  bool closed_notified_ = false;
  EpochFilter epochs_;
  std::vector<OutgoingFrame> in_flight_;
  std::vector<boost::asio::const_buffer> buffers_;
  uint64_t in_flight_bytes_ = 0;

  PeerInfo peer_;  // written during the handshake, read-only once the Link is handed out

  // Sealing: set once authenticated (before open_), then used under seal_mutex_, which also
  // keeps the frames' sequence numbers in the order they enter the queue.
  std::mutex seal_mutex_;
  std::unique_ptr<net::AeadSealer> sealer_;
  // Opening: I/O thread only. `opened_` holds the last opened payload.
  std::unique_ptr<net::AeadOpener> opener_;
  std::string opened_;

  std::atomic<bool> open_{false};
  std::atomic<bool> close_requested_{false};
  SendQueue queue_;
  std::atomic<uint64_t> messages_sent_{0}, messages_received_{0}, bytes_received_{0};
};

}  // namespace tandem::replicator
