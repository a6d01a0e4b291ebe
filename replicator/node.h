// A Tandem node: one VM, primary or secondary of a pair, driven by tandemd.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "control/status.h"
#include "fencing/arbiter.h"
#include "fencing/detector/detector.h"

namespace tandem::replicator {

// The status schema lives with the control client (control/status.h), so tandemctl reads it
// without linking the node.
using control::FencingStatus;
using control::NodeStatus;
using control::PairState;
using control::Role;
using control::SyncProgress;
using control::to_string;

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

}  // namespace tandem::replicator
