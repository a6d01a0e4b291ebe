// A Tandem node: one VM, primary or secondary of a pair, driven by tandemd.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/result.h"
#include "control/status.h"
#include "fencing/arbiter.h"
#include "fencing/detector/detector.h"
#include "hostnet/spec.h"

namespace tandem::replicator {

// The status schema lives with the control client (control/status.h), so tandemctl reads it
// without linking the node.
using control::FencingStatus;
using control::NodeStatus;
using control::PairState;
using control::Role;
using control::SyncProgress;
using control::to_string;

// Behaviour only tests ask for, injected through the config (tandemd fills it from
// TANDEM_TEST_* environment variables; the library never reads the environment).
struct NodeTestHooks {
  // The secondary holds the last sync message back this long (at most 10 s) before it
  // applies it, so the primary's first log batches surely arrive while the replica is still
  // being built (tests/pair sync_log_race; a window of a few ms otherwise).
  std::chrono::milliseconds sync_apply_delay{0};
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
  std::vector<std::string> allow;  // [pair] allow: peer addresses the link and heartbeat listeners admit (empty = any)
  uint32_t heartbeat_ms = 100;     // [pair] heartbeat_ms
  uint32_t heartbeat_misses = 5;   // [pair] heartbeat_misses
  uint32_t max_lag_ms = 100;       // [pair] max_lag_ms (flow control, guest time)
  bool link_encryption = true;     // [pair] encryption (off only to measure its cost; both sides alike)
  std::string console_listen;      // [console] listen = "127.0.0.1:7300"
  std::string control_socket;      // [control] socket = "/run/tandem/NAME.sock"
  std::string state_dir;           // [node] state_dir (epoch file etc.), default /var/lib/tandem/NAME
  std::string log_level = "info";  // [node] log_level
  fencing::ArbiterConfig fencing;  // [fencing] arbiter and its settings; vm_id/psk from [vm]/[pair]
  fencing::SecondPathConfig second_path;  // [fencing] heartbeat_listen/peer/ms/misses (off when unset)
  std::optional<hostnet::NetSpec> net;  // [net] the guest's NIC and its host backend (none when unset)
  NodeTestHooks test;              // tests only
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
  // Each succeeds when the operation was accepted (started); else why it was refused.
  Result<void> protect(const std::string& peer);
  Result<void> unprotect();
  Result<void> failover();  // planned switchover

  struct Impl;  // the pair logic (node.cpp); public so its helpers there can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::replicator
