#pragma once
// NodeCore: the state one Node's parts share (replicator/node.cpp, the pre-copy sender and
// receiver, the primary and secondary roles, the fencing coordinator), and the few helpers
// they all use. It holds no pair logic: each part's file says what it does with it.
//
// Locking: the fields marked "under `mutex`" are read and written with `mutex` held; the
// atomics are read anywhere; the VM-thread fields (the machine and its Worlds) are touched
// only by the VM thread (a secondary's machine may be dropped under `mutex` by the VM thread
// itself). `cv` wakes every waiter of the node (VM thread, monitor, control calls).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>

#include "console/tcp_console.h"
#include "hostnet/backend.h"
#include "vmm-hooks/net_port.h"
#include "fencing/ack_freshness.h"
#include "fencing/decider.h"
#include "fencing/detector/detector.h"
#include "fencing/lease.h"
#include "fencing/release_policy.h"
#include "replicator/config.h"
#include "replicator/epoch_store.h"
#include "replicator/node.h"
#include "replicator/output_gate.h"
#include "replicator/pair_io.h"
#include "replicator/pair_state.h"
#include "replicator/peer_session.h"
#include "replicator/precopy.h"
#include "replicator/primary_world.h"
#include "replicator/transport/link.h"
#include "vmm-hooks/replayer.h"
#include "vmm/boot_spec.h"
#include "vmm/machine.h"

namespace tandem::replicator {

using Clock = std::chrono::steady_clock;

// HOST:PORT through the shared parser (port 0: a listener on a port the system picks).
std::pair<std::string, uint16_t> split_address(const std::string& address);

// Forwards to whichever World the machine is under now: a secondary's machine is built
// under a Replayer and lives on under a Recorder after promotion.
class SwitchWorld final : public vmm::World {
 public:
  vmm::World* current = nullptr;
  uint64_t next_service_icount(uint64_t now) override { return current->next_service_icount(now); }
  void service(vmm::Machine& m) override { current->service(m); }
  bool idle(vmm::Machine& m, uint64_t deadline) override { return current->idle(m, deadline); }
  void output(vmm::OutputChannel channel, uint64_t icount, std::span<const uint8_t> bytes) override {
    current->output(channel, icount, bytes);
  }
  void entropy(uint64_t icount, std::span<uint8_t> out) override { current->entropy(icount, out); }
};

// What the VM thread runs next when a role's run() returns.
enum class NextRole { Primary, Secondary, Stop };

struct NodeCore {
  explicit NodeCore(NodeConfig c);
  ~NodeCore();
  NodeCore(const NodeCore&) = delete;
  NodeCore& operator=(const NodeCore&) = delete;

  NodeConfig cfg;
  const vmm::BootSpec boot;  // what a primary boots ([vm]), as tandem reads it too
  const bool arbitrated;     // [fencing] arbiter != "none"
  const EpochStore epochs;
  std::unique_ptr<fencing::LeaseKeeper> lease;
  std::unique_ptr<fencing::FailureDetector> detector;
  // Primary: when it sent what the secondary acknowledges; lets acknowledged output out
  // while the lease is lapsed (armed only while PROTECTED on the current link).
  fencing::AckFreshness acks;
  std::atomic<uint64_t> peer_heartbeat_ns{0};  // secondary: sent_ns of the primary's last heartbeat

  mutable std::mutex mutex;
  std::condition_variable cv;
  PairStateMachine pair;  // role and state, under `mutex`
  uint64_t epoch = 1;
  PeerSession peer;       // every message to the other node
  std::string last_error;
  std::string peer_address;
  SyncProgress sync;
  bool stopping = false;
  bool stopped = false;

  // Set by control/link threads, consumed by the VM thread.
  std::shared_ptr<Link> pending_link;   // primary: a secondary to sync
  std::shared_ptr<Link> link;           // the peer link in use
  bool unprotect_requested = false;
  bool handover_requested = false;
  std::optional<fencing::Verdict> promotion;  // secondary: go live with this
  uint64_t handover_released = 0;             // planned handover: output the old primary released
  std::deque<wire::SyncChunk> sync_chunks;    // secondary: pre-copy parts to apply, in order
  SyncSequence sync_sequence;                 // secondary: the order they came in
  Clock::time_point sync_started{};           // either side: the first part, for the rate
  std::atomic<uint64_t> sync_acked{0};        // primary: parts the secondary applied (SyncAck)
  std::deque<log::LogBatch> early_batches;    // secondary: the log that came before the sync was applied
  volatile std::sig_atomic_t wake = 0;        // makes an idle primary return to its loop

  // Fencing state (arbitrated only), under `mutex`.
  std::optional<Clock::time_point> link_lost_at;  // the link dropped; the second path decides
  std::optional<Clock::time_point> suspect_since;  // secondary: asking the arbiter since
  bool planned_promotion = false;                 // ... for a handover (the old primary stays heard)
  std::optional<uint64_t> boot_grant;             // primary: the epoch granted before boot
  std::optional<fencing::Grant> boot_refused;     // ... or the arbiter's refusal of its epoch
  bool abandon_replica = false;                   // secondary: the replica is stale, drop it
  bool demote_requested = false;                  // fenced primary: refused by the live one
  std::string promotion_note;                     // status: what a promotion waits for
  std::shared_ptr<Link> rejoin_link;              // fenced primary: a try at its old peer
  bool rejoin_pending = false;                    // ... being connected
  Clock::time_point next_rejoin{};

  std::atomic<uint64_t> icount{0};
  std::atomic<uint64_t> peer_executed{0};
  std::atomic<uint64_t> peer_received{0};
  std::atomic<bool> throttled{false};  // the VM thread waits in throttle() for the secondary
  std::atomic<uint64_t> last_audit_icount{0};
  std::atomic<bool> last_audit_ok{true};
  std::atomic<uint64_t> log_bytes{0};
  uint64_t log_bytes_before = 0;  // sent over earlier links
  std::atomic<int64_t> last_heard_ns{0};
  Clock::time_point rate_mark = Clock::now();
  uint64_t rate_mark_bytes = 0;
  double log_rate_kb_s = 0;

  // Replaced by make_transport() from the VM thread or the lease thread (a new epoch) while
  // the control and monitor threads may connect through it: read and swap it under `mutex`.
  std::shared_ptr<Transport> transport;
  // Where make_transport()'s listener hands a primary that connects (set by the Node).
  std::function<void(std::shared_ptr<Link>)> on_incoming;

  // VM-thread state.
  SwitchWorld world;
  std::optional<vmm::Machine> machine;
  std::unique_ptr<console::TcpConsole> console;
  std::unique_ptr<hooks::NetPort> net_port;  // [net]: the NIC's backend, open only while live
  std::unique_ptr<fencing::LeaseReleasePolicy> release_policy;  // arbitrated: the gate asks it
  std::unique_ptr<OutputGate> gate;
  std::unique_ptr<PrimaryWorld> recorder;
  std::unique_ptr<LinkBatchSink> sink;
  std::shared_ptr<StreamBatchSource> stream;
  std::unique_ptr<OutputTail> tail;
  std::unique_ptr<hooks::Replayer> replayer;

  // [net]: the host side of the guest's NIC, opened only on a live primary (a secondary's
  // frames come from the log; it sends nothing). Transmitted frames leave through the gate.
  void open_net() {
    if (cfg.net && !net_port) net_port = hostnet::open_backend(*cfg.net);
  }

  // [net]: the NIC both sides build (the same MAC and MTU, or the snapshot refuses to restore).
  std::optional<vmm::NicConfig> nic_config() const {
    if (!cfg.net) return std::nullopt;
    return vmm::NicConfig{cfg.net->mac, cfg.net->mtu, cfg.net->link_up};
  }

  uint64_t max_lag_instructions() const { return uint64_t{cfg.max_lag_ms} * 1'000'000; }

  // Secondary (with an arbiter): it goes live no sooner than this after the last message it
  // received from the primary on the link (go_live waits for it), and says so in every Ack.
  // The link's own silence timeout, so a link closed by silence never waits longer.
  std::chrono::milliseconds promotion_holdoff() const {
    return arbitrated ? std::chrono::milliseconds(int64_t{cfg.heartbeat_ms} * cfg.heartbeat_misses)
                      : std::chrono::milliseconds(0);
  }
  void store_epoch(uint64_t e) const { epochs.store(e); }
  uint64_t epoch_now() const;
  std::shared_ptr<Transport> current_transport() const;
  // A transport under the current epoch and role (the handshake presents them), listening
  // on [pair] listen; the old one stops (freeing its port).
  void make_transport();
};

}  // namespace tandem::replicator
