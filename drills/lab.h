// Lab: a throwaway pair on 127.0.0.1 in a temp dir, built for one drill run.
//
//   tandem-witness  (when the build has one: arbiter = "witness"; else arbiter "none")
//   tandem-netsim   proxies, tagged with the node names a/b/witness:
//                     repl-a-b, repl-b-a   replication link, each direction's listener
//                     hb-a-b, hb-b-a       second heartbeat path (witness labs only)
//                     witness-a, witness-b each node's path to the witness
//   tandemd a, b    kv guest, every peer address pointing at a proxy
//
// Every process is a ChildProcess (killed with the lab, also on exceptions and Ctrl-C).
// A node that is rebuilt (after a kill, or fenced) starts again as a fresh secondary on the
// same ports with an empty state dir, like a host that comes back.
#pragma once

#include <array>
#include <chrono>
#include <memory>
#include <string>

#include "drills/pair_env.h"
#include "drills/process.h"

namespace tandem::drills {

struct LabOptions {
  std::string bin_dir;        // tandemd, tandem-netsim, tandem-witness
  std::string guest;          // the kv guest ELF
  std::string arbiter;        // "witness" | "none" | "" = witness when the build has one
  uint64_t seed = 1;
  bool keep = false;          // keep the temp dir (configs, logs) for a post-mortem
  uint32_t heartbeat_ms = 50;
  uint32_t heartbeat_misses = 6;
  uint32_t lease_ms = 1000;
  uint32_t arbiter_timeout_ms = 150;
  std::chrono::seconds protect_timeout{60};
};

class Lab final : public PairEnv {
 public:
  explicit Lab(LabOptions options);  // starts witness and netsim; throws on failure
  ~Lab() override;                   // every process stopped; temp dir removed unless keep

  // Starts a (primary) and b (secondary), protects b, waits for PROTECTED.
  void start_pair();

  std::string describe() const override;
  std::string control_socket(int slot) const override;
  Endpoint console(int slot) const override;
  std::string netsim_socket() const override { return netsim_socket_; }
  bool has_witness() const override { return use_witness_; }
  LinkSet links(int primary_slot) const override;
  void kill9(int slot) override;
  void freeze(int slot) override;
  void thaw(int slot) override;
  void kill_witness() override;
  void restart_witness() override;
  void reprotect() override;
  void cleanup_faults() override;

  const std::string& dir() const { return dir_; }
  const std::string& arbiter() const { return arbiter_; }

 private:
  struct Slot {
    std::string name;     // "a" / "b" (also its netsim tag)
    uint16_t repl_port = 0, console_port = 0, heartbeat_port = 0;
    uint16_t repl_proxy = 0, heartbeat_proxy = 0, witness_proxy = 0;  // proxies *towards* / *from* it
    int generation = 0;   // bumped on each rebuild: a fresh state dir
    std::string socket;
    ChildProcess process;
  };
  void start_node(int slot, bool primary);
  void wait_control(int slot);
  void protect(int primary_slot, int secondary_slot);
  void wait_protected(int primary_slot, int secondary_slot);
  void start_witness();
  std::string write_links_file();

  LabOptions options_;
  std::string dir_;
  std::string arbiter_;
  bool use_witness_ = false;
  std::string psk_file_;
  std::array<Slot, 2> slots_;
  uint16_t witness_port_ = 0;
  ChildProcess witness_;
  ChildProcess netsim_;
  std::string netsim_socket_;
};

// Free TCP ports on 127.0.0.1 (held open together while chosen, so they are distinct).
std::vector<uint16_t> free_ports(size_t count);

}  // namespace tandem::drills
