// ExternalPair: drills against a pair somebody else runs (`--control A.sock --peer-control
// B.sock [--netsim SOCK]`). Signals go to the pid each tandemd reports in its status (so
// the drill must run on the same host as the daemon it kills); after a failover the drill
// waits for the operator's tooling (systemd, Pacemaker) to bring the pair back to PROTECTED.
// netsim links are found by the names of netsim/examples/links.toml: repl, hb2, witness-p.
#pragma once

#include <array>
#include <chrono>
#include <string>

#include "drills/pair_env.h"

namespace tandem::drills {

class ExternalPair final : public PairEnv {
 public:
  // Reads both statuses (consoles, pids); throws UsageError when a socket does not answer.
  ExternalPair(std::string control_a, std::string control_b, std::string netsim_socket,
               std::chrono::seconds reprotect_timeout);

  std::string describe() const override;
  std::string control_socket(int slot) const override { return slot == 0 ? control_a_ : control_b_; }
  Endpoint console(int slot) const override { return consoles_.at(slot); }
  std::string netsim_socket() const override { return netsim_socket_; }
  bool has_witness() const override { return false; }
  LinkSet links(int primary_slot) const override;
  void kill9(int slot) override;
  void freeze(int slot) override;
  void thaw(int slot) override;
  void kill_witness() override;
  void restart_witness() override;
  void reprotect() override;
  void cleanup_faults() override;

 private:
  int pid_of(int slot) const;
  void send(int slot, int sig);

  std::string control_a_, control_b_, netsim_socket_;
  std::array<Endpoint, 2> consoles_;
  std::array<int, 2> frozen_pid_{-1, -1};
  std::chrono::seconds reprotect_timeout_;
};

}  // namespace tandem::drills
