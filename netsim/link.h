// A link: one proxied path (listen address -> target address) with its faults, their
// schedules and its counters. TcpLink and UdpLink add the data paths. Everything here runs
// on the simulator's io thread except the counters, which are atomics so they can be read
// from anywhere.
#pragma once

#include <utility>  // before asio: Boost 1.74's awaitable.hpp uses std::exchange unincluded
#include <atomic>
#include <boost/asio.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "netsim/event_log.h"
#include "netsim/fault.h"
#include "netsim/policy.h"
#include "netsim/random.h"

namespace netsim {

namespace asio = boost::asio;

enum class Protocol { Tcp, Udp };
std::string_view to_string(Protocol protocol);

struct LinkConfig {
  std::string name;
  Protocol protocol = Protocol::Tcp;
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 0;  // 0 = pick a free port (tests)
  std::string target_host = "127.0.0.1";
  uint16_t target_port = 0;
  // Optional node names at the two ends, so a partition can be given as sets of nodes.
  std::string from_node;
  std::string to_node;
  std::optional<uint64_t> seed;  // overrides the one derived from the simulator seed
  // TCP: bytes a direction of one connection may hold (delayed or rate-limited) before it
  // stops reading from its sender, so back-pressure reaches the sender as on a real path.
  uint64_t max_queue_bytes = 8 << 20;
  Duration connect_timeout = std::chrono::seconds(5);
  Duration udp_session_idle = std::chrono::seconds(60);
  size_t udp_max_queue = 10000;  // datagrams waiting per direction before new ones are dropped
};

struct DirectionCounters {
  uint64_t bytes_in = 0, bytes_out = 0;
  uint64_t packets_in = 0, packets_out = 0;  // datagrams (UDP) or reads/writes (TCP)
  uint64_t dropped_packets = 0, dropped_bytes = 0;
  uint64_t duplicated = 0, reordered = 0;
  uint64_t corrupted = 0;  // bytes (TCP) or datagrams (UDP) that had a bit flipped
  uint64_t send_errors = 0;  // UDP: datagrams the kernel refused to send (full buffer, peer gone)
};

struct FaultInfo {
  uint64_t id = 0;
  FaultSpec spec;
  std::string tag;    // partition name for faults set by a partition, else empty
  std::string state;  // "pending", "active", "idle" (flapping, off phase)
};

struct LinkStats {
  std::string name;
  Protocol protocol = Protocol::Tcp;
  std::string listen;
  std::string target;
  DirectionCounters up, down;
  uint64_t connections_accepted = 0;  // TCP connections or UDP sessions
  uint64_t connections_active = 0;
  uint64_t connections_refused = 0;
  uint64_t connections_reset = 0;
  uint64_t connect_failures = 0;
  std::vector<FaultInfo> faults;
};

nlohmann::json to_json(const DirectionCounters& c);
nlohmann::json to_json(const LinkStats& s);

class Link {
 public:
  Link(asio::io_context& io, LinkConfig config, uint64_t simulator_seed, EventLog& events);
  virtual ~Link();
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  const LinkConfig& config() const { return config_; }
  const std::string& name() const { return config_.name; }

  // io thread only from here on.
  virtual void start() = 0;  // binds the listen address; throws std::runtime_error on failure
  virtual void stop() = 0;   // closes everything; pending data is discarded
  virtual uint16_t listen_port() const = 0;
  virtual void reset_connections() = 0;

  // Throws std::invalid_argument if the fault does not apply to this protocol. A fault with
  // the same kind, direction and tag replaces the old one.
  uint64_t add_fault(const FaultSpec& spec, const std::string& tag = "");
  // Removes matching faults (nullopt = any). Never waits for data in flight.
  size_t clear_faults(std::optional<FaultKind> kind, std::optional<Direction> direction,
                      std::optional<std::string> tag);
  std::vector<FaultInfo> faults() const;
  // Restarts every random stream from a new simulator seed (scenario start).
  void reseed(uint64_t simulator_seed);
  LinkStats stats() const;

 protected:
  struct AtomicCounters {
    std::atomic<uint64_t> bytes_in{0}, bytes_out{0}, packets_in{0}, packets_out{0};
    std::atomic<uint64_t> dropped_packets{0}, dropped_bytes{0}, duplicated{0}, reordered{0}, corrupted{0};
    std::atomic<uint64_t> send_errors{0};
    void add(std::atomic<uint64_t>& c, uint64_t n) { c.fetch_add(n, std::memory_order_relaxed); }
  };

  const LinkPolicy& policy() const { return policy_; }
  AtomicCounters& counters(Direction d) { return d == Direction::Down ? down_ : up_; }
  // Records traffic entering the link and fires byte/message triggers.
  void count_in(Direction d, uint64_t bytes, uint64_t packets);
  void count_message();  // TCP: a connection was accepted (the "message" of after_messages)
  // Seed for random stream `stream` of direction `d` (TCP: one stream per connection).
  uint64_t stream_seed(Direction d, uint64_t stream) const;
  void emit(const std::string& event, nlohmann::json fields = nlohmann::json::object());
  // Called after the policy changed; `before` is the previous one.
  virtual void policy_changed(const LinkPolicy& before) = 0;
  virtual void reseeded() {}

  asio::io_context& io_;
  const LinkConfig config_;
  std::atomic<uint64_t> connections_accepted_{0}, connections_active_{0}, connections_refused_{0},
      connections_reset_{0}, connect_failures_{0};

 private:
  enum class EntryState { Pending, Active, Idle };
  struct Entry {
    uint64_t id = 0;
    FaultSpec spec;
    std::string tag;
    EntryState state = EntryState::Pending;
    uint64_t bytes_baseline = 0;
    uint64_t messages_baseline = 0;
    std::unique_ptr<asio::steady_timer> phase_timer;   // start delay, then flap phases
    std::unique_ptr<asio::steady_timer> expiry_timer;  // "for"
  };

  void schedule(Entry& entry);
  void activate(uint64_t id);
  void flap(uint64_t id, bool on);
  void expire(uint64_t id);
  void check_triggers();
  Entry* find(uint64_t id);
  void recompute();
  uint64_t bytes_in_for(Direction d) const;
  uint64_t messages_in_for(Direction d) const;
  static std::string_view state_name(EntryState s);

  EventLog& events_;
  uint64_t seed_;
  uint64_t next_id_ = 1;
  std::vector<std::unique_ptr<Entry>> entries_;  // in insertion order: later overrides earlier
  bool triggers_pending_ = false;
  uint64_t connections_seen_ = 0;  // TCP messages: accepted connections
  uint64_t datagrams_up_ = 0;      // UDP messages, per direction, so a trigger on one
  uint64_t datagrams_down_ = 0;    // direction does not depend on how the other interleaves
  LinkPolicy policy_;
  AtomicCounters up_, down_;
};

}  // namespace netsim
