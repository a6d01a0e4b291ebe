#pragma once
// fencing::FailureDetector: is the peer alive? Two independent paths answer:
//   link         — the replication link (its messages and heartbeats; the node reports
//                  them with link_heard() / link_down()), [pair] heartbeat_ms/misses;
//   second path  — a separate TCP connection between the nodes that carries only
//                  authenticated heartbeats ([fencing] heartbeat_listen/heartbeat_peer,
//                  heartbeat_ms/misses). Each node listens on its own address and sends on
//                  a connection to the peer's.
// A path is silent when nothing was heard on it for interval * misses (or its connection
// was closed and not re-established). Verdicts: both alive; degraded (one path silent:
// report, never promote); suspected (both silent: the peer may be dead — ask the arbiter).
//
// Second-path wire format (one direction per connection, docs/fencing.md "Failure
// detection"): the listener sends a 32-byte random challenge; the connector then sends
// heartbeats, each a wire::Heartbeat (proto/fencing.proto) in a net frame (net/frame.h:
// u32 LE length | u64 LE XXH3-64 | payload, at most 128 payload bytes) carrying
// counter, epoch, role and mac = HMAC-SHA256(heartbeat key, "tandem-hb-v1" | challenge | vm_id |
// counter u64 LE | epoch u64 LE | role u8), where the heartbeat key is the PSK's purpose key
// for the heartbeat path and this vm (net/hkdf.h): the link's key cannot forge a beat.
// The counter starts at 1 and must grow by exactly 1, so a heartbeat cannot be replayed on
// this connection (the challenge) nor on another one. A bad heartbeat closes the connection.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "net/admission.h"

namespace tandem::fencing {

struct PathTiming {
  std::chrono::milliseconds interval{100};
  uint32_t misses = 5;
  std::chrono::milliseconds silence() const { return interval * misses; }
};

// [fencing] heartbeat_listen / heartbeat_peer / heartbeat_ms / heartbeat_misses.
struct SecondPathConfig {
  std::string listen;  // "HOST:PORT" (port 0 = any, see FailureDetector::bound_port)
  std::string peer;    // "HOST:PORT" of the peer's listener
  PathTiming timing;
  // Connections not yet authenticated by a first good beat: per address and in all, and an
  // optional allow-list of peer addresses (net/admission.h). Extra ones are closed at once.
  net::AdmissionLimits admission{16, 4, {}};
  bool enabled() const { return !listen.empty() || !peer.empty(); }
};

struct DetectorConfig {
  std::string vm_id;
  std::string psk;
  PathTiming link;          // [pair] heartbeat_ms / heartbeat_misses
  SecondPathConfig second;  // disabled: the verdict rests on the link alone
};

enum class PeerVerdict {
  Alive,             // both paths (or the only one) heard from
  LinkSilent,        // degraded: the second path still hears the peer
  SecondPathSilent,  // degraded: the link still hears the peer
  Suspected,         // every path silent
};
const char* to_string(PeerVerdict verdict);

// What the peer announced in its last second-path heartbeat.
struct PeerBeat {
  uint64_t epoch = 0;
  uint8_t role = 0;  // 1 primary, 2 secondary (replication.proto Role numbers)
  uint64_t counter = 0;
};

struct DetectorStats {
  uint64_t beats_sent = 0;
  uint64_t beats_received = 0;
  uint64_t rejected = 0;            // connections closed for a bad heartbeat
  std::string last_rejection;       // why, for logs and tests
  bool peer_closed = false;         // the last second-path connection ended with EOF/reset
};

class FailureDetector {
 public:
  using Clock = std::chrono::steady_clock;

  // Throws std::invalid_argument for a bad address or a PSK shorter than 16 bytes.
  explicit FailureDetector(DetectorConfig config);
  ~FailureDetector();
  FailureDetector(const FailureDetector&) = delete;
  FailureDetector& operator=(const FailureDetector&) = delete;

  // Opens the listener and starts sending (second path enabled only). Throws
  // std::system_error when the listen address cannot be bound.
  void start();
  void stop();  // idempotent; also done by the destructor
  uint16_t bound_port() const;

  // What our heartbeats announce (thread-safe, any time).
  void set_local(uint64_t epoch, uint8_t role);

  // The link path, fed by the node.
  void link_heard(Clock::time_point now = Clock::now());
  void link_down();

  bool second_path_enabled() const;
  bool link_alive(Clock::time_point now = Clock::now()) const;
  bool second_path_alive(Clock::time_point now = Clock::now()) const;
  // True when the second path's peer closed its connection (EOF/reset) rather than going
  // quiet: its process is gone, not cut off.
  bool second_path_peer_closed() const;
  // When the last good second-path heartbeat arrived (epoch of the clock if never).
  Clock::time_point second_path_last_heard() const;
  PeerVerdict verdict(Clock::time_point now = Clock::now()) const;
  PeerBeat last_beat() const;
  DetectorStats stats() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace tandem::fencing
