// PairEnv: what a drill needs from the pair under test, whoever runs it.
//   Lab         (lab.h) a throwaway pair on 127.0.0.1 that the drill starts and owns.
//   ExternalPair        an existing pair named by its control sockets (and netsim's).
// Slots are 0 and 1 (the two hosts); which one is primary changes with every failover.
#pragma once

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "drills/kv_client.h"

namespace tandem::drills {

// A command-line mistake: the CLI exits 2 with this message.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Ctrl-C (SIGINT/SIGTERM) during a drill: the CLI's handler calls request_interrupt();
// every wait in the drill checks it and throws Interrupted, so the lab tears down cleanly.
class Interrupted : public std::runtime_error {
 public:
  Interrupted() : std::runtime_error("interrupted") {}
};
void request_interrupt();  // async-signal-safe
bool interrupt_requested();
void throw_if_interrupted();
// Sleeps in small steps, throwing Interrupted when asked to stop.
void sleep_interruptible(std::chrono::milliseconds duration);

// One request to tandem-netsim's control socket (net::json_lines_request).
nlohmann::json netsim_request(const std::string& socket, const nlohmann::json& request,
                              std::chrono::milliseconds timeout);

// The netsim links of one failure domain, as seen from the current primary P and
// secondary S.
struct LinkSet {
  std::vector<std::string> replication;  // P<->S replication link (both directions' proxies)
  std::vector<std::string> heartbeat;    // the second heartbeat path (empty when there is none)
  std::vector<std::string> primary_witness;  // P's path to the witness (empty: no witness)
};

class PairEnv {
 public:
  virtual ~PairEnv() = default;
  virtual std::string describe() const = 0;
  virtual std::string control_socket(int slot) const = 0;
  virtual Endpoint console(int slot) const = 0;
  virtual std::string netsim_socket() const = 0;  // "" = no netsim
  virtual bool has_witness() const = 0;           // a witness this drill may kill and restart
  virtual LinkSet links(int primary_slot) const = 0;

  virtual void kill9(int slot) = 0;
  virtual void freeze(int slot) = 0;  // SIGSTOP
  virtual void thaw(int slot) = 0;    // SIGCONT
  virtual void kill_witness() = 0;
  virtual void restart_witness() = 0;

  // Returns once the pair is PROTECTED again (a survivor primary and a synced secondary);
  // the lab rebuilds the lost side, an external pair is waited for. Throws on timeout.
  virtual void reprotect() = 0;
  // Undo anything the drill left behind (thaw, heal). Best effort, never throws.
  virtual void cleanup_faults() = 0;
};

// `tandemctl status --json` of a node, or std::nullopt when it does not answer in time.
std::optional<nlohmann::json> node_status(const std::string& socket, int timeout_ms = 500);
// Primary that releases output: role primary, a serving state, not fenced.
bool is_live_primary(const nlohmann::json& status);
bool is_protected_pair(const nlohmann::json& primary, const nlohmann::json& secondary);

}  // namespace tandem::drills
