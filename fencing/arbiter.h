#pragma once
// fencing::Arbiter: the one authority that says which node of a pair is primary, and under
// which epoch. Epochs are fencing tokens: only an arbiter grants a new one, a grant to a new
// holder is always higher than any epoch granted before, and a node that holds the lease
// keeps it only by renewing before it lapses.
//
// Implementations (chosen by [fencing] arbiter in tandemd's config):
//   none     — no arbiter: grants on request (the live pair's heartbeat-only behaviour;
//              cannot tell a dead primary from a partitioned one). Tests and demos only.
//   witness  — a tandem-witness process on a third host (fencing/witness_*).
//   disk     — a test-and-set record on shared storage (fencing/disk_arbiter.*).
//   command  — an operator STONITH command that powers the peer off (fencing/command_arbiter.*).
//   etcd     — an etcd lease, the epoch an etcd revision won by compare-and-swap
//              (fencing/etcd_arbiter.*).
//
// Timing contract. `ttl` in a Grant is the lease length the arbiter counts from the moment
// it *received* the request. A holder therefore counts its own lease from the moment it
// *sent* the request (earlier), shortened by a safety margin for clock-rate differences
// (LeaseKeeper in fencing/lease.h), and stops releasing output when that local deadline
// passes without a renewal. The arbiter never grants the lease to another node before its
// own (later) deadline. So a partitioned old primary is silent before the new one speaks.
//
// All calls may block for about one network round trip (bounded by the implementation's
// timeout) and are called from one thread at a time per Arbiter object.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace tandem::fencing {

struct Grant {
  enum class Outcome {
    Granted,      // the caller holds the lease under `epoch` for `ttl`
    Held,         // another node holds a live lease (`holder`); retry later
    Refused,      // never with these arguments: stale epoch, bad credentials, ...
    Unreachable,  // the arbiter could not be asked (timeout, connection refused, ...)
  };
  Outcome outcome = Outcome::Unreachable;
  uint64_t epoch = 0;              // Granted: the epoch to run under. Else: the newest the arbiter knows, if any
  std::chrono::milliseconds ttl{0};  // Granted: lease length; 0 = the grant does not lapse (STONITH, none)
  std::string holder;              // the node the arbiter believes holds the lease ("" = nobody)
  std::string why;                 // one line for logs and `tandemctl status`

  bool granted() const { return outcome == Outcome::Granted; }
};

const char* to_string(Grant::Outcome outcome);

class Arbiter {
 public:
  virtual ~Arbiter() = default;

  // "witness 10.0.0.3:7400", "disk /shared/vm1.lease", ... for logs and status.
  virtual std::string describe() const = 0;

  // Become the holder. `known_epoch` is the highest epoch this node has seen (a secondary:
  // the epoch of its replica). If the caller already holds the lease this is a renewal.
  // Refused when known_epoch is below an epoch the holder advanced to (advance(), below):
  // the caller's replica is stale and may never be promoted, only re-synced. Otherwise it is
  // granted only when nobody holds a live lease, and then under an epoch > every epoch
  // granted before (and > known_epoch). Used by a booting primary and by a secondary that
  // suspects its primary.
  virtual Grant acquire(const std::string& node, uint64_t known_epoch) = 0;

  // Compare-and-swap of the epoch by the holder: "if `node` holds the lease under `epoch`,
  // move it to epoch + 1" (and renew the lease under the new epoch). From then on every
  // acquire with known_epoch <= `epoch` is Refused. A primary calls it when it drops a
  // secondary that went silent on every path: the secondary's replica misses what the
  // primary releases from now on, so it must never be promoted. Granted: the new epoch and
  // ttl. Refused: the caller does not hold `epoch` (someone else was granted a later one).
  // Unreachable: unknown, the caller must not release unacknowledged output.
  virtual Grant advance(const std::string& node, uint64_t epoch) = 0;

  // The holder extends its lease under `epoch`. Refused when the arbiter has since granted
  // a later epoch to anyone (the caller has been fenced and must stop at once).
  virtual Grant renew(const std::string& node, uint64_t epoch) = 0;

  // Give the lease up (planned handover, clean shutdown) so the peer may acquire at once.
  // Best effort: a lost release only delays the peer by one ttl.
  virtual void release(const std::string& node, uint64_t epoch) = 0;
};

// Everything any arbiter needs from the config ([fencing] section of tandemd's TOML).
struct ArbiterConfig {
  std::string kind = "none";      // arbiter = "none" | "witness" | "disk" | "command" | "etcd"
  std::string vm_id;              // the pair's VM identity: one lease per VM
  std::string psk;                // the pair's pre-shared key (witness authentication)
  std::chrono::milliseconds lease{2000};    // lease_ms: ttl requested from the arbiter
  std::chrono::milliseconds timeout{500};   // arbiter_timeout_ms: one request's bound
  std::string witness;            // witness = "HOST:PORT"
  std::string disk_path;          // disk_path = "/shared/vm1.lease"
  std::string fence_command;      // fence_command = "/usr/local/sbin/power-off host-a"
                                  //   run through /bin/sh; exit 0 = the peer is off
  std::string etcd;               // etcd = "http://127.0.0.1:2379"
};

// Builds the arbiter named by `config.kind`. Throws std::invalid_argument naming the
// problem for an unknown kind or a missing setting.
std::unique_ptr<Arbiter> make_arbiter(const ArbiterConfig& config);

}  // namespace tandem::fencing
