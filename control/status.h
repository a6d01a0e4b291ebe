// The status schema of tandemd's control socket: what `tandemctl status` shows and
// {"cmd":"status"} returns. The node fills it (replicator/node.h uses these types); clients
// read it back from JSON without linking the node.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace tandem::control {

enum class Role { Primary, Secondary };
enum class PairState {
  Standalone,
  Syncing,
  Protected,
  Standby,  // secondary waiting for a primary
  Failed,
  Fenced,   // a primary that lost its lease (or yielded it): no output until re-synced as a secondary
};

const char* to_string(Role role);
const char* to_string(PairState state);

struct SyncProgress {
  uint32_t rounds = 0;
  uint64_t bytes = 0;
  double rate_mb_s = 0;
  bool done = false;
};

// The [fencing] view of `tandemctl status` (docs/fencing.md).
struct FencingStatus {
  std::string arbiter;          // Arbiter::describe()
  int64_t lease_ms_left = -1;   // -1: no lease held
  bool fenced = false;          // the output gate is closed by self-fencing
  std::string link = "down";    // "up" | "down": the replication link hears the peer
  std::string heartbeat_path = "off";  // "up" | "down" | "off": the second heartbeat path
  bool degraded = false;        // exactly one of the two paths hears the peer
  std::string lease;            // the last arbiter outcome, e.g. "renew: granted epoch 4 (ttl 2000 ms)"
  std::string promotion;        // secondary: "" or what a promotion waits for
  int64_t ack_ms_left = -1;     // primary: acknowledged output may leave this long without the lease (-1: no)
};

// One output channel's gate (primary): what waits for the secondary's acknowledgement, what
// left, and the output-commit latency of the recent releases (µs from production to release).
struct OutputStatus {
  uint64_t held_bytes = 0, held_items = 0;          // items: console writes / network frames
  uint64_t released_bytes = 0, released_items = 0;  // since protection (re)started
  double latency_p50_us = -1, latency_max_us = -1;  // the last 1000 releases (-1: none yet)
};

struct NodeStatus {
  std::string node_name, vm_id;
  Role role = Role::Primary;
  PairState state = PairState::Standalone;
  uint64_t epoch = 0;
  uint64_t icount = 0;
  uint64_t peer_icount = 0;  // executed on the other side
  uint64_t lag_instructions = 0;
  double lag_ms = 0;  // lag in guest time: 1 instruction = 1 ns
  double log_rate_kb_s = 0;
  uint64_t log_bytes = 0;
  uint64_t last_audit_icount = 0;
  bool last_audit_ok = true;
  SyncProgress sync;
  std::string peer;
  std::string console;
  std::string last_error;
  int64_t pid = 0;  // tandemd's process id
  FencingStatus fencing;
  OutputStatus console_output, net_output;  // the output gate, per channel
};

// The status object of a "status" reply, and back (tolerant of missing fields, throws
// std::runtime_error for fields of the wrong type or unknown role/state names).
nlohmann::json status_to_json(const NodeStatus& status);
NodeStatus status_from_json(const nlohmann::json& json);

}  // namespace tandem::control
