#pragma once
// The replication link: one authenticated, framed, bidirectional channel of wire::Envelope
// messages between the two tandemd hosts. An interface so that an RDMA transport can come
// later; make_tcp_transport() gives the Boost.Asio TCP one.
//
// Frames on the link are those of the event-log file (vmm-hooks/event_log.h):
//   u32 LE payload length | u64 LE XXH3-64(payload) | payload   (payload <= 64 MiB)
// A frame with a bad checksum or an absurd length closes the link with a logged reason; it is
// never parsed. The handshake (proto/replication.proto, docs/replication-link.md) checks the
// protocol version and the vm_id and authenticates both sides with HMAC-SHA256 over fresh
// challenges under the link's key (derived from the pair's pre-shared key); after it, every
// payload is AES-256-GCM sealed (auth.h) and one that does not open closes the link.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "proto/replication.pb.h"

namespace tandem::replicator {

// 2: the initial sync is chunked (SyncChunk.sequence/part, SyncAck); a version-1 peer
// would misread the parts, so it is refused at the handshake.
// 3: each handshake proof binds both challenges, both announcements and the direction
// (auth.h), which closes the cross-node proof relay; the role pair is checked. A version-2
// peer computes the old proofs, so it is refused at once with "protocol version 2 not
// supported (this side speaks 3)", and refuses a version-3 Hello the same way.
// 4: proofs and frame keys under the link's purpose key (not the PSK); every frame after the
// handshake is sealed with AES-256-GCM under per-connection, per-direction keys, its sequence
// number as the nonce (auth.h, docs/security.md): a forged, altered, replayed, reordered or
// injected frame closes the link. Hello/HelloReply say whether encryption is off
// (`cleartext`, benchmarks only); both sides must agree.
inline constexpr uint32_t kProtocolVersion = 4;
// A PSK shorter than this is refused by make_tcp_transport(): the handshake hands an
// unauthenticated peer an HMAC it could brute-force offline if the key were guessable.
inline constexpr size_t kMinPskBytes = 16;

struct LinkIdentity {  // what this side presents and expects
  std::string vm_id;   // both sides must agree
  std::string node_name;
  std::string psk;     // pre-shared key bytes (from psk_file), at least kMinPskBytes
  uint64_t epoch = 0;
  wire::Role role = wire::ROLE_UNSPECIFIED;
  // Seal every frame after the handshake ([pair] encryption, default on). Off only to measure
  // what encryption costs: both sides must agree or the handshake is refused.
  bool encryption = true;
  // Optional: the owner's current epoch, when it can move past `epoch` while the transport
  // runs. Called on the I/O thread for each envelope received; one below it is stale too.
  std::function<uint64_t()> current_epoch;
};

struct PeerInfo {
  std::string node_name;
  uint64_t epoch = 0;  // the epoch the peer presented in the handshake
  wire::Role role = wire::ROLE_UNSPECIFIED;
  std::string address;  // "ip:port" of the remote end
};

struct LinkStats {
  uint64_t messages_sent = 0;      // messages accepted by send()
  uint64_t messages_received = 0;  // envelopes delivered to on_message
  uint64_t bytes_sent = 0;         // written to the socket, frame headers and handshake included
  uint64_t bytes_received = 0;
  uint64_t stale_epoch_dropped = 0;  // envelopes dropped by the epoch rule
};

// One authenticated link. Every callback runs on the transport's I/O thread, never
// concurrently with another callback of the same transport.
class Link {
 public:
  virtual ~Link() = default;

  // Queues one message; thread-safe, never blocks. An envelope whose epoch is 0 is stamped
  // with this side's epoch (LinkIdentity::epoch). Dropped silently once the link is closed.
  // A send backlog past TransportOptions::max_queued_bytes closes the link.
  virtual void send(wire::Envelope message) = 0;
  // Idempotent, thread-safe. Stops delivering messages at once, fires on_closed (once, on the
  // I/O thread), then flushes what is already queued (bounded by the linger time) and closes
  // the socket. Errors (peer gone, bad frame) close at once without flushing.
  virtual void close(const std::string& reason) = 0;
  virtual const PeerInfo& peer() const = 0;
  virtual bool is_open() const = 0;
  virtual uint64_t queued_bytes() const = 0;  // send backlog (for flow control)
  virtual LinkStats stats() const = 0;

  // Set both before start(); called on the transport's I/O thread.
  // Epoch rule (epoch_filter.h, the only place it is applied): an envelope whose epoch is lower
  // than the peer's handshake epoch, than the highest epoch already delivered from this peer,
  // or than LinkIdentity::current_epoch() is dropped and logged ("stale epoch"), never
  // delivered (LinkStats::stale_epoch_dropped counts them). Handshake messages after
  // authentication, and Refused, close the link. A handler that throws closes the link.
  std::function<void(wire::Envelope&&)> on_message;
  std::function<void(const std::string& reason)> on_closed;  // fires exactly once
  // Begins delivering messages (including any the peer sent before start()). Call once.
  virtual void start() = 0;
};

struct TransportOptions {
  // The whole handshake (including the TCP connect on the connecting side) must finish within
  // this, or the socket is closed: a peer that connects and says nothing cannot hold a slot.
  std::chrono::milliseconds handshake_timeout{5000};
  // Connections accepted but not yet authenticated, in all and from one address; more are
  // closed at once (and logged), so a flood from one address cannot lock the real peer out.
  size_t max_pending_handshakes = 16;
  size_t max_pending_handshakes_per_address = 4;
  // Peer addresses allowed to connect (numeric; empty = any): others are closed at accept.
  std::vector<std::string> allow;
  // A send backlog past this closes the link (the pair logic throttles long before that).
  uint64_t max_queued_bytes = 1ull << 30;
  // How long close() keeps flushing queued messages before it drops them.
  std::chrono::milliseconds close_linger{2000};
};

struct TransportStats {
  uint64_t links_accepted = 0;      // authenticated links handed to listen's on_link
  uint64_t links_connected = 0;     // authenticated links handed to connect's callback
  uint64_t handshakes_refused = 0;  // on either side: bad frame, version, vm_id, proof, timeout
  std::string last_refusal;         // the reason of the latest refusal, for status and tests
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Accepts authenticated links on host:port (port 0 = any; see bound_port()). Throws
  // std::system_error when the address cannot be bound, std::logic_error on a second call.
  virtual void listen(const std::string& host, uint16_t port,
                      std::function<void(std::shared_ptr<Link>)> on_link) = 0;
  virtual uint16_t bound_port() const = 0;
  // Connects and runs the handshake. `done` runs once on the I/O thread with either a started-
  // not-yet Link and an empty error, or nullptr and a reason (wrong PSK, refused, timeout...).
  virtual void connect(const std::string& host, uint16_t port,
                       std::function<void(std::shared_ptr<Link>, std::string error)> done) = 0;
  virtual TransportStats stats() const = 0;
  // Closes the listener and every link (their on_closed fire), and joins the I/O thread.
  // Idempotent; also done by the destructor. Must not be called from a transport callback.
  // Links may outlive their transport: they are then closed and inert.
  virtual void stop() = 0;
};

// Throws std::invalid_argument for an identity without vm_id or with a PSK shorter than
// kMinPskBytes.
std::unique_ptr<Transport> make_tcp_transport(const LinkIdentity& me, TransportOptions options = {});

}  // namespace tandem::replicator
