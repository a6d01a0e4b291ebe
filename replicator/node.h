// A Tandem node: one VM, primary or secondary of a pair, driven by tandemd.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "fencing/arbiter.h"
#include "fencing/detector.h"

namespace tandem::replicator {

enum class Role { Primary, Secondary };
enum class PairState {
  Standalone,
  Syncing,
  Protected,
  Standby,  // secondary waiting for a primary
  Failed,
  Fenced,   // a primary that lost its lease (or yielded it): no output until re-synced as a secondary
};

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
};

struct NodeConfig {                // filled from TOML + flags by config.cpp
  std::string node_name;           // [node] name (default: hostname)
  std::string guest;               // [vm] guest (a bare image), or:
  std::string bios;                // [vm] bios   (firmware boot: OpenSBI, then kernel/initrd)
  std::string kernel;              // [vm] kernel (needs bios)
  std::string initrd;              // [vm] initrd (needs kernel)
  std::string bootargs;            // [vm] append (kernel command line, /chosen/bootargs)
  uint64_t mem_mib = 128;          // [vm] mem_mib
  std::string disk;                // [vm] disk
  std::string vm_id;               // [vm] id (default: guest or kernel file name)
  Role role = Role::Primary;       // [pair] role = "primary" | "secondary"
  std::string listen;              // [pair] listen = "127.0.0.1:7100" (replication link, incoming)
  std::string peer;                // [pair] peer = "127.0.0.1:7200" (primary: protect this at start; optional)
  std::string psk_file;            // [pair] psk_file (required)
  std::string psk;                 // loaded contents
  uint32_t heartbeat_ms = 100;     // [pair] heartbeat_ms
  uint32_t heartbeat_misses = 5;   // [pair] heartbeat_misses
  uint32_t max_lag_ms = 100;       // [pair] max_lag_ms (flow control, guest time)
  std::string console_listen;      // [console] listen = "127.0.0.1:7300"
  std::string control_socket;      // [control] socket = "/run/tandem/NAME.sock"
  std::string state_dir;           // [node] state_dir (epoch file etc.), default /var/lib/tandem/NAME
  std::string log_level = "info";  // [node] log_level
  fencing::ArbiterConfig fencing;  // [fencing] arbiter and its settings; vm_id/psk from [vm]/[pair]
  fencing::SecondPathConfig second_path;  // [fencing] heartbeat_listen/peer/ms/misses (off when unset)
};

class Node {
 public:
  explicit Node(NodeConfig config);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  void start();  // throws std::runtime_error on startup failure
  void stop();
  void wait();                                   // blocks until stopped (signal → stop())
  NodeStatus status() const;                     // thread-safe
  std::string protect(const std::string& peer);  // "" on success (started), else error
  std::string unprotect();
  std::string failover();  // planned switchover

  struct Impl;  // the pair logic (node.cpp); public so its helpers there can name it

 private:
  std::unique_ptr<Impl> impl_;
};

const char* to_string(Role role);
const char* to_string(PairState state);

}  // namespace tandem::replicator
