// Why this file is still ~1,700 lines: issue 15 splits it by responsibility and is half done.
// The output gate, the pair state table (pair_state.*), EpochStore, PeerSession and the
// transport's epoch filter have moved out; PrimaryRole (boot, run loop, throttle, handover),
// SecondaryRole (sync apply, replay, go-live), FencingCoordinator and the pre-copy
// sender/receiver are still the Impl methods below, and are the next pieces to move.
//
// The live pair. One Node per tandemd: a primary runs the guest with a Recorder whose
// batches stream to the secondary and whose console output waits behind the output rule;
// a secondary rebuilds the machine from the primary's pre-copy checkpoints, replays the
// stream a little behind it, and goes live when the primary is lost or hands over.
//
// Threads: the VM thread owns the machine and its Worlds; the transport's I/O thread runs
// link callbacks; a monitor thread sends heartbeats, watches the peer and makes the
// fencing decisions; the LeaseKeeper's thread talks to the arbiter; the FailureDetector's
// thread runs the second heartbeat path. Shared state is under `mutex`; the machine is
// touched only by the VM thread.
//
// Fencing (docs/fencing.md). With [fencing] arbiter = "none" the pair behaves as before
// the arbiters: a secondary promotes when its link drops, a primary that loses its
// secondary goes STANDALONE at once. With an arbiter:
//  - a primary acquires the lease before it boots the guest and releases output only while
//    LeaseKeeper::may_release_output(), or while PROTECTED and the secondary's acks are fresh
//    (fencing::AckFreshness: the secondary cannot be live yet; docs/fencing.md "Output while
//    the arbiter is away"), so a witness restart does not stop a healthy pair;
//  - a primary that loses the link holds its output until the second path decides: the
//    peer still heard there (or its process gone: EOF) → STANDALONE, keeping the lease;
//    every path silent → it asks the arbiter to advance the epoch (a CAS: only while it
//    holds the lease) and goes STANDALONE under epoch + 1 once that is confirmed; the
//    secondary's older replica is refused by the arbiter from then on. Unconfirmed, output
//    stays held (the lease may lapse and the secondary take over: the advance is refused);
//  - a secondary that loses the link drops its replica (STANDBY) when the second path still
//    hears the primary (the primary goes on alone, the replica is stale); when every path
//    is silent it asks the arbiter every lease/4 and goes live with the granted epoch; if
//    the arbiter refuses its epoch (advanced by the primary), the lease stays held for 3
//    leases, or the primary is heard again, it gives up;
//  - a FENCED primary retries its [pair] peer; the live primary there refuses it (stale
//    epoch, "resync") and it becomes an empty STANDBY secondary, ready to be protected.
#include "replicator/node.h"

#include <pthread.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "checkpoint/checkpoint.h"
#include "console/tcp_console.h"
#include "fencing/ack_freshness.h"
#include "fencing/decider.h"
#include "fencing/detector/detector.h"
#include "fencing/lease.h"
#include "fencing/release_policy.h"
#include "net/endpoint.h"
#include "replicator/output_gate.h"
#include "replicator/epoch_store.h"
#include "replicator/pair_io.h"
#include "replicator/pair_state.h"
#include "replicator/peer_session.h"
#include "replicator/precopy.h"
#include "replicator/transport/link.h"
#include "vmm-hooks/recorder.h"
#include "vmm-hooks/replayer.h"
#include "vmm/machine.h"

namespace tandem::replicator {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kSlice = 2'000'000;          // instructions between command checks
constexpr uint64_t kReplaySlice = 1'000'000;     // secondary: instructions between acks
constexpr uint64_t kAuditInterval = 10'000'000;  // state-hash audits in the stream
constexpr uint32_t kMaxPrecopyRounds = 4;
constexpr uint64_t kPrecopyDoneBytes = 256 << 10;  // a round this small ends the pre-copy
// While a pre-copy waits for the secondary, the guest runs in slices this long.
constexpr uint64_t kPrecopySlice = 250'000;

// While it replays, the secondary's VM thread is SCHED_BATCH: a batch thread that wakes
// (a log batch arrived) does not preempt what runs, so on a shared machine the threads on
// the output-commit path (the acks, the primary's console, its client) run first, and the
// replay takes its fair share of the CPU after them. Restored when the replay ends (a
// promoted secondary serves clients). Unprivileged: only a move between SCHED_OTHER and
// SCHED_BATCH; a refusal (seccomp, an RT policy already set) leaves the thread as it is.
class ReplaySchedulingClass {
 public:
  ReplaySchedulingClass() {
    sched_param param{};
    if (pthread_getschedparam(pthread_self(), &policy_, &param) == 0 && policy_ == SCHED_OTHER) {
      changed_ = pthread_setschedparam(pthread_self(), SCHED_BATCH, &param) == 0;
    }
  }
  ~ReplaySchedulingClass() {
    sched_param param{};
    if (changed_) pthread_setschedparam(pthread_self(), SCHED_OTHER, &param);
  }
  ReplaySchedulingClass(const ReplaySchedulingClass&) = delete;
  ReplaySchedulingClass& operator=(const ReplaySchedulingClass&) = delete;

 private:
  int policy_ = SCHED_OTHER;
  bool changed_ = false;
};

// The link closed during a pre-copy: the rounds stop where they are.
struct SyncAborted {};

// HOST:PORT through the shared parser (port 0: a listener on a port the system picks).
std::pair<std::string, uint16_t> split_address(const std::string& address) {
  const net::Endpoint e = net::parse_endpoint(address, {.allow_any_port = true, .numeric_host = false});
  return {e.host, e.port};
}

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

}  // namespace

// What the primary's run does at its World's call points (Node::Impl: flow control, and
// the progress status shows).
class PrimaryRun {
 public:
  virtual ~PrimaryRun() = default;
  virtual void at_service(vmm::Machine& m) = 0;  // after the Recorder's service
  virtual void at_idle(vmm::Machine& m) = 0;     // before the guest's idle wait
};

// The primary's World: a Recorder whose output (every channel, with its icount) goes
// through the output gate, and that logs how far each channel's output has been released.
class PrimaryWorld final : public hooks::Recorder {
 public:
  PrimaryWorld(PrimaryRun& run, hooks::ConsolePort& input, OutputGate& gate, hooks::RecorderOptions options)
      : Recorder(input, gate, options), run_(run), gate_(gate) {}
  void service(vmm::Machine& m) override;
  bool idle(vmm::Machine& m, uint64_t deadline) override;
  // A new log starts (protection): its markers count from 0, as the gate's counts do.
  void restart_release_markers() { logged_released_.fill(0); }

 private:
  void log_release_markers(vmm::Machine& m) {
    if (!recording()) return;
    for (size_t c = 0; c < vmm::kOutputChannels; ++c) {
      const auto channel = static_cast<vmm::OutputChannel>(c);
      const uint64_t released = gate_.released_bytes(channel);
      if (released != logged_released_[c]) {
        log_output_released(m.icount(), channel, released);
        logged_released_[c] = released;
      }
    }
  }
  PrimaryRun& run_;
  OutputGate& gate_;
  std::array<uint64_t, vmm::kOutputChannels> logged_released_{};
};

struct Node::Impl final : PrimaryRun {
  NodeConfig cfg;
  const bool arbitrated;  // [fencing] arbiter != "none"
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
  std::thread vm_thread;
  std::thread monitor_thread;

  // VM-thread state.
  SwitchWorld world;
  std::optional<vmm::Machine> machine;
  std::unique_ptr<console::TcpConsole> console;
  std::unique_ptr<fencing::LeaseReleasePolicy> release_policy;  // arbitrated: the gate asks it
  std::unique_ptr<OutputGate> gate;
  std::unique_ptr<PrimaryWorld> recorder;
  std::unique_ptr<LinkBatchSink> sink;
  std::shared_ptr<StreamBatchSource> stream;
  std::unique_ptr<OutputTail> tail;
  std::unique_ptr<hooks::Replayer> replayer;

  explicit Impl(NodeConfig c)
      : cfg(std::move(c)),
        arbitrated(cfg.fencing.kind != "none"),
        epochs(cfg.state_dir),
        pair(cfg.role),
        peer([this] { return epoch_now(); }, promotion_holdoff()) {}

  Result<void> protect_peer(const std::string& peer);

  uint64_t max_lag_instructions() const { return uint64_t{cfg.max_lag_ms} * 1'000'000; }

  // Secondary (with an arbiter): it goes live no sooner than this after the last message it
  // received from the primary on the link (go_live waits for it), and says so in every Ack.
  // The link's own silence timeout, so a link closed by silence never waits longer.
  std::chrono::milliseconds promotion_holdoff() const {
    return arbitrated ? std::chrono::milliseconds(int64_t{cfg.heartbeat_ms} * cfg.heartbeat_misses)
                      : std::chrono::milliseconds(0);
  }
  void store_epoch(uint64_t e) const { epochs.store(e); }

  // PrimaryRun: called by the primary's World on the VM thread.
  void at_service(vmm::Machine& m) override { throttle(m); }
  void at_idle(vmm::Machine& m) override {
    icount = m.icount();
    if (sink) log_bytes = sink->bytes() + log_bytes_before;
  }

  // ---- transport --------------------------------------------------------------------
  void make_transport() {
    LinkIdentity me;
    me.vm_id = cfg.vm_id;
    me.node_name = cfg.node_name;
    me.psk = cfg.psk;
    me.current_epoch = [this] { return epoch_now(); };  // the link drops what is older (stale)
    {
      std::lock_guard lock(mutex);
      me.epoch = epoch;
      me.role = pair.role() == Role::Primary ? wire::PRIMARY : wire::SECONDARY;
    }
    std::shared_ptr<Transport> fresh = make_tcp_transport(me);
    std::shared_ptr<Transport> old;
    {
      std::lock_guard lock(mutex);
      old = std::exchange(transport, fresh);
    }
    if (old) old->stop();  // frees the listening port for the new transport
    if (detector) detector->set_local(me.epoch, static_cast<uint8_t>(me.role));
    if (!cfg.listen.empty()) {
      const auto [host, port] = split_address(cfg.listen);
      fresh->listen(host, port, [this](std::shared_ptr<Link> l) { on_incoming(std::move(l)); });
    }
  }

  std::shared_ptr<Transport> current_transport() const {
    std::lock_guard lock(mutex);
    return transport;
  }

  uint64_t epoch_now() const {
    std::lock_guard lock(mutex);
    return epoch;
  }

  void attach(const std::shared_ptr<Link>& l) {
    std::weak_ptr<Link> weak = l;
    l->on_message = [this, weak](wire::Envelope&& e) {
      if (auto s = weak.lock()) on_message(s, std::move(e));
    };
    l->on_closed = [this, weak](const std::string& reason) {
      if (auto s = weak.lock()) on_link_closed(s, reason);
    };
    last_heard_ns = Clock::now().time_since_epoch().count();
    if (detector) detector->link_heard();
  }

  // A primary connects to us (we are an empty secondary).
  void on_incoming(std::shared_ptr<Link> l) {
    if (l->peer().role != wire::PRIMARY) {
      // The transport refuses any other role pair already (auth.h role_pair_allowed); an
      // epoch is adopted only from a primary.
      spdlog::warn("refusing a pair link from {} ({}): only a primary opens a pair link", l->peer().address,
                   wire::Role_Name(l->peer().role));
      l->close("not a primary");
      return;
    }
    std::unique_lock lock(mutex);
    if (l->peer().epoch < epoch) {
      // A primary of an older epoch was superseded: it must not run on, but be re-synced.
      const std::string reason = fmt::format("stale epoch {} < {}: resync as a secondary", l->peer().epoch, epoch);
      lock.unlock();
      spdlog::warn("refusing primary {} ({}) at epoch {}: this node has seen epoch {}; told it to resync",
                   l->peer().node_name, l->peer().address, l->peer().epoch, epoch_now());
      peer.refuse(l, reason);
      return;
    }
    if (pair.role() != Role::Secondary || pair.state() != PairState::Standby || link) {
      lock.unlock();
      spdlog::warn("refusing a pair link from {}: this node is {} {}", l->peer().address, to_string(pair.role()),
                   to_string(pair.state()));
      l->close("busy: not a standby secondary");
      return;
    }
    epoch = l->peer().epoch;
    last_heard_ns = Clock::now().time_since_epoch().count();  // before the monitor sees the link
    link = l;
    peer_address = l->peer().address;
    pair.to(PairState::Syncing, "a primary connected");
    sync = {};
    sync_sequence = {};
    sync_chunks.clear();  // parts of an earlier, broken sync
    early_batches.clear();
    lock.unlock();
    store_epoch(l->peer().epoch);
    spdlog::info("primary {} ({}) connected at epoch {}: syncing", l->peer().node_name, l->peer().address,
                 l->peer().epoch);
    attach(l);
    l->start();
    cv.notify_all();
  }

  void on_message(const std::shared_ptr<Link>& l, wire::Envelope&& e) {
    bool current;  // the link in use (not a pending or abandoned one)
    {
      std::lock_guard lock(mutex);
      current = l == link;  // a message older than this node's epoch never gets here (epoch_filter.h)
    }
    last_heard_ns = Clock::now().time_since_epoch().count();
    if (detector) detector->link_heard();
    switch (e.body_case()) {
      case wire::Envelope::kBatch: {
        std::shared_ptr<StreamBatchSource> s;
        {
          std::lock_guard lock(mutex);
          s = stream;
          if (!s) {
            // The primary streams its log right after the closing sync message, while the
            // VM thread may still be applying it: keep the batches for the replay (dropping
            // them stalled or diverged a replica whose guest ran on at once).
            if (pair.role() == Role::Secondary && sync_sequence.complete()) early_batches.push_back(std::move(*e.mutable_batch()));
            return;
          }
        }
        // Acknowledged on receipt (the primary's console waits for this), and before the
        // replay is woken: a woken VM thread can take this core before the ack is out.
        if (!s->push(std::move(*e.mutable_batch()), /*wake=*/false)) {
          on_log_gap(l, s);
          return;
        }
        peer.send_ack(l, *s, icount.load());
        s->wake_consumer();
        return;
      }
      case wire::Envelope::kAck: {
        peer_received = e.ack().received_icount();
        peer_executed = e.ack().executed_icount();
        if (current) {
          acks.batch_acknowledged(e.ack().batch_sequence(),
                                  std::chrono::milliseconds(e.ack().promotion_holdoff_ms()));
        }
        if (gate) gate->acknowledge(e.ack().received_icount());
        // Only a throttled VM thread waits for acks; waking every waiter on `cv` per ack
        // would also run the monitor loop (and a heartbeat) once per kv reply.
        if (throttled.load()) cv.notify_all();
        return;
      }
      case wire::Envelope::kSyncChunk: {
        std::unique_lock lock(mutex);
        if (pair.role() != Role::Secondary) {
          spdlog::warn("ignored a sync message from {}: this node is the primary", l->peer().address);
          return;
        }
        if (auto accepted = sync_sequence.accept(e.sync_chunk()); !accepted) {
          const std::string error = accepted.error().message;
          last_error = "sync refused: " + error;
          spdlog::error("{}", last_error);
          lock.unlock();
          peer.send_sync_result(l, false, 0, error);
          l->close("sync refused");  // outside the lock: close() can run on_link_closed inline
          return;
        }
        const auto now = Clock::now();
        if (e.sync_chunk().sequence() == 0) sync_started = now;
        sync.rounds = e.sync_chunk().round() + 1;
        sync.bytes += e.sync_chunk().checkpoint().size();
        const double seconds = std::chrono::duration<double>(now - sync_started).count();
        sync.rate_mb_s = seconds > 0 ? sync.bytes / seconds / 1e6 : 0;
        sync_chunks.push_back(std::move(*e.mutable_sync_chunk()));
        cv.notify_all();
        return;
      }
      case wire::Envelope::kSyncAck: {
        sync_acked = e.sync_ack().sequence() + 1;
        cv.notify_all();
        return;
      }
      case wire::Envelope::kSyncResult: {
        std::unique_lock lock(mutex);
        if (e.sync_result().ok()) {
          pair.to(PairState::Protected, "the secondary verified the sync");
          sync.done = true;
          if (arbitrated && current) acks.arm();
          spdlog::info("PROTECTED: the secondary verified state hash {:016x}", e.sync_result().state_hash());
        } else {
          last_error = "secondary refused the sync: " + e.sync_result().error();
          spdlog::error("{}", last_error);
          lock.unlock();  // close() can run on_link_closed inline (this is the I/O thread)
          l->close("sync failed");
        }
        return;
      }
      case wire::Envelope::kHeartbeat:
        if (pair.role() == Role::Primary) {
          peer_executed = std::max(peer_executed.load(), e.heartbeat().icount());
          if (current && e.heartbeat().echo_ns() != 0) {
            acks.heartbeat_echoed(e.heartbeat().echo_ns());
            if (gate) gate->pump();  // acknowledged output held for a lapsed lease may go now
          }
        } else {
          peer_heartbeat_ns = e.heartbeat().sent_ns();
        }
        return;
      case wire::Envelope::kDivergence: {
        const auto& d = e.divergence();
        {
          std::lock_guard lock(mutex);
          last_error = fmt::format("DIVERGENCE reported by the secondary at icount {}: {} (log {:016x}, secondary {:016x})",
                                   d.icount(), d.what(), d.expected(), d.actual());
          last_audit_ok = false;
          spdlog::critical("{}; dropping to STANDALONE", last_error);
        }
        l->close("divergence");  // outside the lock: close() can run on_link_closed inline
        return;
      }
      case wire::Envelope::kHandover: {
        std::lock_guard lock(mutex);
        if (pair.role() == Role::Secondary && pair.state() == PairState::Protected) {
          handover_released = e.handover().released_output();
          if (stream) stream->close();  // the handover follows the last batch on the link
          if (!arbitrated) {
            promotion = fencing::Verdict{true, e.handover().new_epoch(), "planned handover"};
            spdlog::info("handover at icount {}: going live with epoch {}", e.handover().icount(),
                         e.handover().new_epoch());
          } else {
            // The old primary released the lease before it sent this: acquire it.
            spdlog::info("handover at icount {}: acquiring the lease from {}", e.handover().icount(), lease->describe());
            start_promotion_locked("planned handover", /*planned=*/true);
          }
          cv.notify_all();
        }
        return;
      }
      default:
        spdlog::warn("unexpected message {} from {}", static_cast<int>(e.body_case()), l->peer().address);
        return;
    }
  }

  void on_link_closed(const std::shared_ptr<Link>& l, const std::string& reason) {
    std::unique_lock lock(mutex);
    if (link != l && pending_link != l) return;
    if (pending_link == l) pending_link.reset();
    if (link != l) return;
    link.reset();
    if (detector) detector->link_down();
    if (pair.role() == Role::Primary) acks.disarm();  // no secondary on a link: the lease alone decides
    if (pair.role() == Role::Primary && pair.state() == PairState::Fenced) {
      // Nothing to decide: a fenced primary releases nothing either way.
    } else if (pair.role() == Role::Primary && arbitrated && sync.done) {
      // The secondary may hold a complete replica (the last sync chunk went out): output
      // stays held until the second path tells a lost link from a lost peer.
      if (pair.state() != PairState::Standalone) {
        spdlog::warn("secondary lost on the link ({}): output held until the second path decides", reason);
        link_lost_at = Clock::now();
      }
      wake = 1;  // the VM thread stops recording
    } else if (pair.role() == Role::Primary) {
      // No secondary to wait for (or none that could take over: it never got the whole
      // machine): output flows again (the VM thread stops recording).
      if (pair.state() != PairState::Standalone) spdlog::warn("secondary lost ({}): STANDALONE", reason);
      pair.to(PairState::Standalone, "secondary lost: " + reason);
      if (gate) gate->set_gated(false);
      wake = 1;
    } else if (pair.state() == PairState::Protected && !promotion && arbitrated) {
      if (!suspect_since) {
        spdlog::warn("primary lost on the link ({}): the second path decides", reason);
        link_lost_at = Clock::now();
      }
    } else if (pair.state() == PairState::Protected && !promotion) {
      spdlog::warn("primary lost ({}): promoting (heartbeat-only fencing, arbiter = none)", reason);
      promotion = fencing::Verdict{true, epoch + 1, "peer lost (" + reason + "); heartbeat-only fencing"};
      // No more log will come: the replay runs out what it has (also from inside an
      // idle wait at the frontier), then the VM thread goes live.
      if (stream) stream->close();
    } else if (pair.state() == PairState::Syncing) {
      spdlog::warn("primary lost during sync ({}): back to STANDBY", reason);
      pair.to(PairState::Standby, "primary lost during sync: " + reason);
    }
    cv.notify_all();
  }

  // ---- fencing decisions (monitor thread, under `mutex`) ----------------------------------

  // Secondary: ask the arbiter; the grant turns into a promotion on the VM thread.
  void start_promotion_locked(const std::string& why, bool planned = false) {
    suspect_since = Clock::now();
    planned_promotion = planned;
    link_lost_at.reset();
    promotion_note = "asking the arbiter (" + why + ")";
    lease->acquire(epoch, [this, why](const fencing::Grant& g) {
      bool give_back = false;
      {
        std::lock_guard lock(mutex);
        if (pair.role() == Role::Secondary && pair.state() == PairState::Protected && suspect_since && !abandon_replica) {
          promotion = fencing::Verdict{true, g.epoch, "arbiter granted epoch " + std::to_string(g.epoch) + " after " + why};
          promotion_note = "granted epoch " + std::to_string(g.epoch) + ": going live";
          suspect_since.reset();
          if (stream) stream->close();
        } else {
          give_back = true;  // the replica went meanwhile: nothing to go live with
        }
      }
      cv.notify_all();
      if (give_back) lease->release();
    }, [this](const fencing::Grant& g) {
      // The primary advanced the epoch without this node: its replica may never go live.
      std::lock_guard lock(mutex);
      if (pair.role() == Role::Secondary && suspect_since && !planned_promotion)
        abandon_replica_locked("the arbiter refused this replica (" + g.why + ")");
    });
  }

  // Secondary: the replica can no longer become the primary (the primary went on alone).
  void abandon_replica_locked(const std::string& why) {
    spdlog::warn("{}: this replica is stale; dropping it (STANDBY) until the primary protects this node again", why);
    if (suspect_since) lease->cancel();
    suspect_since.reset();
    link_lost_at.reset();
    promotion_note.clear();
    abandon_replica = true;
    if (stream) stream->close();
    cv.notify_all();
  }

  void fencing_tick_locked(Clock::time_point now, std::vector<std::function<void()>>& after) {
    if (!arbitrated || !detector) return;
    const bool path_on = detector->second_path_enabled();
    const auto heard_after = [&](Clock::time_point t) { return path_on && detector->second_path_last_heard() > t; };
    if (pair.role() == Role::Primary && link_lost_at && pair.state() != PairState::Fenced) {
      const Clock::time_point t = *link_lost_at;
      if (heard_after(t) || (path_on && detector->second_path_peer_closed())) {
        const bool gone = !heard_after(t);
        link_lost_at.reset();
        pair.to(PairState::Standalone, "the secondary is heard on the second path, or gone");
        spdlog::warn("the secondary {} on the second path: STANDALONE, keeping the lease; its replica is stale",
                     gone ? "closed its connection (its process is gone)" : "is still heard");
        if (gate) gate->set_gated(false);
        wake = 1;
      } else if (!path_on || !detector->second_path_alive(now)) {
        // Dead or cut off, the secondary's replica misses what this node releases from now
        // on: move the epoch past it at the arbiter first, so it can never be promoted.
        link_lost_at.reset();
        promotion_note = "advancing the epoch: the secondary is silent on every path";
        spdlog::warn("the secondary is silent on every path: asking {} to advance epoch {}; output held until it "
                     "confirms",
                     lease->describe(), epoch);
        after.push_back([this] { lease->advance([this](const fencing::Grant& g) { on_epoch_advanced(g); }); });
      }
    }
    if (pair.role() == Role::Secondary && pair.state() == PairState::Protected && !promotion) {
      if (link_lost_at) {
        const Clock::time_point t = *link_lost_at;
        if (heard_after(t)) {
          abandon_replica_locked("the primary lost the link but is heard on the second path");
        } else if (!path_on || !detector->second_path_alive(now)) {
          spdlog::warn("primary suspected: {}; asking {} for the lease", fencing::to_string(detector->verdict(now)),
                       lease->describe());
          start_promotion_locked("the primary is silent on every path");
        }
      } else if (suspect_since) {
        promotion_note = "asking the arbiter: " + lease->last_outcome();
        if (heard_after(*suspect_since) && !planned_promotion) {
          abandon_replica_locked("the primary is heard again on the second path while this node asked for the lease");
        } else if (now - *suspect_since > 3 * cfg.fencing.lease) {
          abandon_replica_locked(fmt::format("the arbiter kept the lease with the primary for {} ms ({})",
                                             (3 * cfg.fencing.lease).count(), lease->last_outcome()));
        }
      }
    }
    if (pair.role() == Role::Primary && pair.state() == PairState::Fenced && !cfg.peer.empty() && !rejoin_link &&
        !rejoin_pending && !demote_requested && now >= next_rejoin) {
      next_rejoin = now + std::chrono::seconds(1);
      rejoin_pending = true;  // one attempt at a time: a partition holds connects open
      after.push_back([this] { try_rejoin(); });
    }
  }

  // Fenced primary: knock at the old peer. A live primary there refuses this node's older
  // epoch with "resync": then this node becomes an empty standby secondary.
  void try_rejoin() {
    std::pair<std::string, uint16_t> hp;
    try {
      hp = split_address(cfg.peer);
    } catch (const std::exception&) {
      std::lock_guard lock(mutex);
      rejoin_pending = false;
      return;
    }
    current_transport()->connect(hp.first, hp.second, [this](std::shared_ptr<Link> l, std::string error) {
      {
        std::lock_guard lock(mutex);
        rejoin_pending = false;
      }
      if (!l) {
        if (error.find("resync") != std::string::npos) on_rejoin_refused(error);
        return;
      }
      if (l->peer().role != wire::PRIMARY) {
        l->close("a fenced primary does not sync a secondary");  // e.g. a standby that lost its primary too
        return;
      }
      l->on_message = [](wire::Envelope&&) {};
      std::weak_ptr<Link> weak = l;
      l->on_closed = [this, weak](const std::string& reason) {
        {
          std::lock_guard lock(mutex);
          if (rejoin_link == weak.lock()) rejoin_link.reset();
        }
        if (reason.find("resync") != std::string::npos) on_rejoin_refused(reason);
      };
      {
        std::lock_guard lock(mutex);
        rejoin_link = l;
      }
      l->start();
    });
  }

  void on_rejoin_refused(const std::string& reason) {
    std::lock_guard lock(mutex);
    if (pair.role() != Role::Primary || pair.state() != PairState::Fenced || demote_requested) return;
    spdlog::warn("the live primary at {} refused this node ({}): becoming a STANDBY secondary to be re-synced",
                 cfg.peer, reason);
    demote_requested = true;
    wake = 1;
    cv.notify_all();
  }

  // LeaseKeeper: the arbiter moved this primary's epoch past its silent secondary. The
  // secondary's replica is refused from now on, so output may flow without its acks.
  void on_epoch_advanced(const fencing::Grant& g) {
    uint64_t before;
    {
      std::lock_guard lock(mutex);
      if (pair.role() != Role::Primary || pair.state() == PairState::Fenced || stopping) return;
      before = std::exchange(epoch, g.epoch);
      pair.to(PairState::Standalone, "the epoch advanced past the silent secondary");
      promotion_note.clear();
      if (gate) gate->set_gated(false);
      wake = 1;
    }
    store_epoch(g.epoch);
    make_transport();  // a secondary protected from now on is told the new epoch
    spdlog::warn("epoch advanced {} -> {} at {}: STANDALONE; the silent secondary's replica is stale (refused by the "
                 "arbiter, re-synced when it is protected again)",
                 before, g.epoch, lease->describe());
    cv.notify_all();
  }

  // LeaseKeeper: the lease is lost (refused renewal) or yielded. No output from here on.
  void on_fenced(const std::string& why) {
    std::shared_ptr<Link> l;
    {
      std::lock_guard lock(mutex);
      if (pair.role() != Role::Primary) return;
      acks.disarm();
      pair.to(PairState::Fenced, "fenced: " + why);
      last_error = "fenced: " + why;
      link_lost_at.reset();
      promotion_note.clear();
      l = std::exchange(link, nullptr);
      wake = 1;
      next_rejoin = Clock::now() + std::chrono::seconds(1);
    }
    spdlog::critical("FENCED: {}; this node releases no output until it is re-synced as a secondary", why);
    cv.notify_all();
    if (l) l->close("fenced");
  }

  // ---- monitor: heartbeats both ways ----------------------------------------------------
  void monitor_loop() {
    const auto interval = std::chrono::milliseconds(cfg.heartbeat_ms);
    const int64_t limit_ns = int64_t{cfg.heartbeat_ms} * cfg.heartbeat_misses * 1'000'000;
    std::shared_ptr<Link> counted_link;  // the link whose received bytes were last counted
    uint64_t counted_bytes = 0;
    std::unique_lock lock(mutex);
    while (!stopping) {
      cv.wait_for(lock, interval);
      if (stopping) break;
      std::shared_ptr<Link> l = link;
      if (l) {
        // A pre-copy part (MiBs) can take longer than the heartbeat limit to arrive on a
        // slow or loaded link, and heartbeats queue behind it: bytes arriving are the peer.
        const uint64_t received = l->stats().bytes_received;
        if (l == counted_link && received != counted_bytes) {
          last_heard_ns = Clock::now().time_since_epoch().count();
          if (detector) detector->link_heard();
        }
        counted_link = l;
        counted_bytes = received;
      } else {
        counted_link.reset();
      }
      const bool primary = pair.role() == Role::Primary;
      // Log rate for status.
      const auto now = Clock::now();
      const double dt = std::chrono::duration<double>(now - rate_mark).count();
      if (dt >= 1.0) {
        log_rate_kb_s = (log_bytes.load() - rate_mark_bytes) / dt / 1024.0;
        rate_mark = now;
        rate_mark_bytes = log_bytes.load();
      }
      std::vector<std::function<void()>> after;
      fencing_tick_locked(now, after);
      lock.unlock();
      for (auto& f : after) f();
      if (l) {
        const auto sent_ns = static_cast<uint64_t>(now.time_since_epoch().count());
        if (primary) acks.heartbeat_sent(now.time_since_epoch().count(), now);
        peer.send_heartbeat(l, sent_ns, icount.load(), primary ? 0 : peer_heartbeat_ns.load());
        if (now.time_since_epoch().count() - last_heard_ns.load() > limit_ns) {
          l->close(fmt::format("no message from the peer for {} ms", limit_ns / 1'000'000));
        }
      }
      lock.lock();
    }
  }

  // ---- VM thread ----------------------------------------------------------------------
  void vm_main() {
    try {
      if (pair.role() == Role::Primary) {
        if (arbitrated && !wait_for_boot_lease()) return;
        boot_primary();
        if (arbitrated && !cfg.peer.empty()) {
          if (auto r = protect_peer(cfg.peer); !r) spdlog::warn("protect {}: {}", cfg.peer, r.error().message);
        }
        primary_loop();
      } else {
        secondary_loop();
      }
    } catch (const std::exception& e) {
      std::lock_guard lock(mutex);
      last_error = e.what();
      pair.to(PairState::Failed, std::string("the VM thread stopped: ") + e.what());
      spdlog::critical("VM thread stopped: {}", e.what());
    }
  }

  // A primary runs only under a lease: acquire (retrying while another node holds it), then
  // take the granted epoch. False when stopped meanwhile.
  bool wait_for_boot_lease() {
    spdlog::info("asking {} for the lease before booting", lease->describe());
    uint64_t granted;
    for (uint64_t known = epoch_now();;) {
      lease->acquire(known, [this](const fencing::Grant& g) {
        std::lock_guard lock(mutex);
        boot_grant = g.epoch;
        cv.notify_all();
      }, [this](const fencing::Grant& g) {
        std::lock_guard lock(mutex);
        boot_refused = g;
        cv.notify_all();
      });
      std::unique_lock lock(mutex);
      promotion_note = "acquiring the lease before boot";
      cv.wait(lock, [this] { return stopping || boot_grant.has_value() || boot_refused.has_value(); });
      if (stopping) return false;
      if (boot_refused) {
        // A cold boot continues no replica, so an epoch the arbiter advanced past this node's
        // does not make it stale: ask again from the arbiter's epoch (other refusals, e.g. a
        // corrupt lease record, are retried every lease/4 until an operator fixes them).
        const fencing::Grant refused = *std::exchange(boot_refused, std::nullopt);
        spdlog::warn("lease before boot refused: {}; asking again from epoch {}", refused.why,
                     std::max(known, refused.epoch));
        promotion_note = "lease before boot refused: " + refused.why;
        if (refused.epoch <= known)
          cv.wait_for(lock, std::max(cfg.fencing.lease / 4, std::chrono::milliseconds(10)), [this] { return stopping; });
        if (stopping) return false;
        known = std::max(known, refused.epoch);
        continue;
      }
      granted = *boot_grant;
      epoch = granted;
      promotion_note.clear();
      break;
    }
    store_epoch(granted);
    make_transport();  // the handshake presents the granted epoch
    spdlog::info("lease granted: primary at epoch {}", granted);
    return true;
  }

  void open_console() {
    if (cfg.console_listen.empty()) {
      console = std::make_unique<console::TcpConsole>("127.0.0.1", 0);
    } else {
      const auto [host, port] = split_address(cfg.console_listen);
      console = std::make_unique<console::TcpConsole>(host, port);
    }
    gate = std::make_unique<OutputGate>(console.get());
    if (arbitrated) {
      if (!release_policy) release_policy = std::make_unique<fencing::LeaseReleasePolicy>(*lease, acks);
      gate->set_release_policy(release_policy.get());
    }
    hooks::RecorderOptions options;
    options.audit_interval = kAuditInterval;
    options.time = hooks::GuestTime::Wall;
    options.poll_interval = 1 << 18;
    options.interrupt_flag = &wake;
    recorder = std::make_unique<PrimaryWorld>(*this, *console, *gate, options);
    world.current = recorder.get();
    spdlog::info("console listening on {}:{}", cfg.console_listen.empty() ? "127.0.0.1" : split_address(cfg.console_listen).first,
                 console->port());
  }

  // The image the recorder header and the log name: the guest, or a firmware boot's kernel.
  const std::string& header_image() const {
    if (!cfg.guest.empty()) return cfg.guest;
    return cfg.kernel.empty() ? cfg.bios : cfg.kernel;
  }

  void boot_primary() {
    vmm::MachineConfig mc;
    mc.mem_bytes = cfg.mem_mib << 20;
    mc.disk_path = cfg.disk;
    mc.bootargs = cfg.bootargs;
    open_console();
    machine.emplace(mc, world);
    if (cfg.bios.empty()) {
      machine->load(cfg.guest);
    } else {
      machine->boot(vmm::BootImages{cfg.bios, cfg.kernel, cfg.initrd});
    }
    spdlog::info("booted {} ({} MiB) as primary, epoch {}", header_image(), cfg.mem_mib, epoch_now());
  }

  void primary_loop() {
    for (;;) {
      {
        std::unique_lock lock(mutex);
        if (stopping) return;
        if (pair.state() == PairState::Fenced) {
          // The guest stays paused: nothing it computed could be released anyway.
          if (demote_requested) {
            lock.unlock();
            demote_to_standby();
            return secondary_loop();
          }
          pending_link.reset();
          handover_requested = unprotect_requested = false;
          cv.wait_for(lock, std::chrono::milliseconds(100));
          continue;
        }
        if (handover_requested) {
          handover_requested = false;
          lock.unlock();
          if (do_handover()) return secondary_loop();
          continue;
        }
        if (pending_link) {
          std::shared_ptr<Link> l = std::exchange(pending_link, nullptr);
          lock.unlock();
          precopy(l);
          continue;
        }
        if (unprotect_requested) {
          unprotect_requested = false;
          std::shared_ptr<Link> l = std::exchange(link, nullptr);
          pair.to(PairState::Standalone, "unprotect");
          acks.disarm();
          lock.unlock();
          if (l) l->close("unprotect");
          gate->set_gated(false);
        }
        if (!link && recorder->recording()) {
          lock.unlock();
          recorder->set_sink(*machine, nullptr);
          log_bytes_before += sink->bytes();
          sink.reset();
        }
      }
      wake = 0;
      const vmm::RunResult r = machine->run_until(machine->icount() + kSlice);
      icount = r.icount;
      if (r.exit == vmm::Exit::GuestPass || r.exit == vmm::Exit::GuestFail || r.exit == vmm::Exit::Reset) {
        recorder->finish(*machine, r);
        spdlog::warn("the guest ended ({}, code {}) at icount {}", vmm::to_string(r.exit), r.code, r.icount);
        std::unique_lock lock(mutex);
        last_error = std::string("guest ended: ") + vmm::to_string(r.exit);
        cv.wait(lock, [this] { return stopping; });
        return;
      }
    }
  }

  // A fenced primary that the live primary refused: drop the VM, become an empty standby.
  void demote_to_standby() {
    std::shared_ptr<Link> l;
    {
      std::lock_guard lock(mutex);
      l = std::exchange(link, nullptr);
    }
    if (l) l->close("demoted");
    if (recorder && recorder->recording() && machine) recorder->set_sink(*machine, nullptr);
    machine.reset();
    recorder.reset();
    sink.reset();
    gate.reset();
    console.reset();
    lease->cancel();
    {
      std::lock_guard lock(mutex);
      pair.to(Role::Secondary, PairState::Standby, "demoted: the live primary refused this fenced node");
      demote_requested = false;
      last_error.clear();
      sync = {};
    }
    make_transport();
    spdlog::warn("STANDBY: this node (epoch {}) waits to be re-synced by the live primary", epoch_now());
  }

  // Iterative pre-copy to a new secondary, then streaming. Each round goes out in parts
  // of kSyncPartBytes, at most kSyncWindowParts ahead of the secondary's acknowledgements.
  // The VM thread stays the machine's only owner and runs the guest throughout the copy
  // rounds: between guest slices it copies the round's next pages into a batch
  // (checkpoint::RoundCopier, ~1 MiB, a memcpy) and hands it to the PartPipeline's thread,
  // which compresses, hashes and sends the parts and waits for the acknowledgements. What
  // the guest writes after a page was copied lands in the next round's dirty pages (as in
  // live migration). The last round and the closing message are taken with the machine
  // paused: the last dirty pages, then the core state, icount, state hash and the header of
  // the log the secondary will replay.
  void precopy(const std::shared_ptr<Link>& l) {
    acks.reset();  // a new link: nothing acknowledged on an earlier one counts
    {
      std::lock_guard lock(mutex);
      pair.to(PairState::Syncing, "pre-copy to a new secondary");
      sync = {};
      link = l;
      peer_address = l->peer().address;
      sync_started = Clock::now();
    }
    sync_acked = 0;
    const auto start = Clock::now();
    const uint64_t icount_before = machine->icount();
    // Written by whichever thread sends (the pipeline's during a round, this one for the
    // closing message); the pipeline's hand-offs order the two.
    uint64_t sequence = 0;
    uint32_t round = 0, part = 0;
    std::atomic<bool> abandoned{false};  // the VM thread gave up: a sender waiting for acks stops
    auto send_part = [&](std::string&& stream, wire::SyncChunk chunk = {}) {
      wait_for_sync_acks(l, sequence, kSyncWindowParts, /*guest_runs=*/false, &abandoned);
      const uint64_t n = stream.size();
      chunk.set_round(round);
      chunk.set_part(part++);
      chunk.set_sequence(sequence++);
      chunk.set_checkpoint(std::move(stream));
      wire::Envelope e;
      *e.mutable_sync_chunk() = std::move(chunk);
      peer.send(l, std::move(e));
      std::lock_guard lock(mutex);
      sync.rounds = round + 1;
      sync.bytes += n;
      const double s = std::chrono::duration<double>(Clock::now() - start).count();
      sync.rate_mb_s = s > 0 ? sync.bytes / s / 1e6 : 0;
    };
    auto log_round = [&](const checkpoint::Stats& s, uint64_t sent_before) {
      std::lock_guard lock(mutex);
      spdlog::info("pre-copy round {}: {} parts, {} pages, {} bytes; {} bytes in {:.2f} s so far ({:.1f} MB/s)", round,
                   part, s.pages, sync.bytes - sent_before, sync.bytes,
                   std::chrono::duration<double>(Clock::now() - start).count(), sync.rate_mb_s);
    };
    PartPipeline pipeline(kSyncPartBytes, kSyncCopyBatches, kSyncCopyBatchBytes,
                          [&](std::string&& stream) { send_part(std::move(stream)); });
    // Declared after the pipeline, so it is set before the pipeline joins its thread.
    struct Abandon {
      std::atomic<bool>& flag;
      ~Abandon() { flag = true; }
    } abandon_on_exit{abandoned};
    // One round through the pipeline. While no batch is free (or the round's last parts
    // are on their way) the guest runs in slices, unless this is the stop-and-copy.
    auto copy_round = [&](checkpoint::Kind kind, bool guest_runs) {
      checkpoint::RoundCopier copier(*machine, kind);
      auto meanwhile = [&] {
        check_sync_link(l);
        if (guest_runs) {
          run_precopy_slice();
        } else {
          pipeline.wait(std::chrono::milliseconds(1));
        }
      };
      checkpoint::Stats stats;
      while (!copier.done()) {
        (void)pipeline.round_done(stats);  // rethrows what the pipeline's thread ran into
        if (checkpoint::RecordBatch* batch = pipeline.free_batch()) {
          copier.copy_next(kSyncCopyBatchBytes, *batch);
          pipeline.submit(batch);
        } else {
          meanwhile();
        }
      }
      pipeline.end_round();
      while (!pipeline.round_done(stats)) meanwhile();
      return stats;
    };
    recorder->flush_output();  // output from before protection is not the secondary's
    try {
      uint64_t sent_before = 0;
      checkpoint::Stats stats = copy_round(checkpoint::Kind::Full, true);
      log_round(stats, sent_before);
      for (round = 1; round < kMaxPrecopyRounds; ++round) {
        part = 0;
        sent_before = sync_bytes();
        // The guest runs until the secondary has applied the last round; then copy what it dirtied.
        wait_for_sync_acks(l, sequence, 1, true);
        stats = copy_round(checkpoint::Kind::Incremental, true);
        log_round(stats, sent_before);
        if (stats.stream_bytes < kPrecopyDoneBytes) break;
      }
      // Stop-and-copy: the machine is paused here (this thread owns it). What the guest
      // dirtied during the last round, then the core state in the closing message.
      round = std::min(round, kMaxPrecopyRounds - 1);
      recorder->flush_output();
      part = 0;
      ++round;
      sent_before = sync_bytes();
      stats = copy_round(checkpoint::Kind::Incremental, false);
      wire::SyncChunk last;
      last.set_last(true);
      last.set_icount(machine->icount());
      last.set_state_hash(machine->state_hash());
      *last.mutable_log_header() = recorder->make_header(*machine, header_image());
      send_part(checkpoint::write_incremental(*machine), std::move(last));  // nothing dirty: the core state
      log_round(stats, sent_before);
    } catch (const SyncAborted&) {
      abandon_sync(l, "");
      return;
    } catch (const std::exception& e) {  // e.g. the disk image cannot be read
      abandon_sync(l, e.what());
      return;
    }
    gate->reset_counts();
    gate->set_gated(true);
    sink = std::make_unique<LinkBatchSink>(l, [this](uint64_t sequence) { acks.batch_sent(sequence); });
    recorder->set_sink(*machine, sink.get());
    recorder->restart_release_markers();
    std::lock_guard lock(mutex);
    sync.done = true;
    spdlog::info("pre-copy sent: {} rounds, {} messages, {} bytes in {:.3f} s ({:.1f} MB/s); the guest ran {} "
                 "instructions meanwhile; streaming the log",
                 sync.rounds, sequence, sync.bytes, std::chrono::duration<double>(Clock::now() - start).count(),
                 sync.rate_mb_s, machine->icount() - icount_before);
  }

  // A pre-copy that stopped part-way: the rounds it took are lost (the next incremental is
  // complete), and the link is dropped when this node still holds it.
  void abandon_sync(const std::shared_ptr<Link>& l, const std::string& error) {
    checkpoint::mark_all_changed(*machine);
    if (error.empty()) {
      spdlog::warn("pre-copy stopped after {} bytes: the link to {} closed", sync_bytes(), l->peer().address);
    } else {
      spdlog::error("pre-copy failed after {} bytes: {}", sync_bytes(), error);
      l->close("pre-copy failed");
    }
    std::lock_guard lock(mutex);
    if (!error.empty()) last_error = "pre-copy failed: " + error;
    if (link == l) {  // it closed before this pre-copy took it: on_link_closed did not see it
      link.reset();
      if (pair.state() == PairState::Syncing) pair.to(PairState::Standalone, "the pre-copy stopped");
    }
  }

  // Throws SyncAborted when the node stops or the sync's link is gone.
  void check_sync_link(const std::shared_ptr<Link>& l) {
    std::lock_guard lock(mutex);
    if (stopping || link != l || !l->is_open()) throw SyncAborted{};
  }

  // One slice of the guest during a pre-copy (unrecorded: the secondary gets what it writes
  // in the next round). A guest that cannot run on waits a little instead of spinning.
  void run_precopy_slice() {
    wake = 1;  // an idle guest ends the slice at once: there is nothing to wait for
    const vmm::RunResult r = machine->run_until(machine->icount() + kPrecopySlice);
    icount = r.icount;
    if (r.exit != vmm::Exit::Running) {
      std::unique_lock lock(mutex);
      cv.wait_for(lock, std::chrono::milliseconds(1));
    }
  }

  uint64_t sync_bytes() const {
    std::lock_guard lock(mutex);
    return sync.bytes;
  }

  // Flow control of the pre-copy: returns when fewer than `window` of the messages sent
  // before `sequence` await the secondary's SyncAck. Meanwhile the guest runs in short
  // slices when `guest_runs` (only the VM thread may ask for that). Throws SyncAborted when
  // the link closes, the secondary stops answering, or `abandoned` is set.
  void wait_for_sync_acks(const std::shared_ptr<Link>& l, uint64_t sequence, uint64_t window, bool guest_runs,
                          const std::atomic<bool>* abandoned = nullptr) {
    const auto patience = std::chrono::seconds(30);
    auto deadline = Clock::now() + patience;
    uint64_t acked = sync_acked.load();
    while (sequence >= acked + window) {
      check_sync_link(l);
      if (abandoned && *abandoned) throw SyncAborted{};
      if (Clock::now() > deadline) {
        l->close("the secondary acknowledged no sync message for 30 s");
        throw SyncAborted{};
      }
      if (guest_runs) {
        run_precopy_slice();
      } else {
        std::unique_lock lock(mutex);
        cv.wait_for(lock, std::chrono::milliseconds(1));
      }
      if (const uint64_t now_acked = sync_acked.load(); now_acked != acked) {
        acked = now_acked;
        deadline = Clock::now() + patience;
      }
    }
  }

  // Called by PrimaryWorld::service on the VM thread.
  void throttle(vmm::Machine& m) {
    icount = m.icount();
    if (!sink) return;
    log_bytes = sink->bytes() + log_bytes_before;
    std::unique_lock lock(mutex);
    // Flow control: the secondary must not fall more than max_lag behind.
    while (link && !stopping && !handover_requested &&
           m.icount() > peer_executed.load() + max_lag_instructions()) {
      throttled = true;
      cv.wait_for(lock, std::chrono::milliseconds(5));
    }
    throttled = false;
  }

  // Planned switchover: pause, let every output out, hand the secondary the last icount.
  bool do_handover() {
    std::shared_ptr<Link> l;
    uint64_t new_epoch;
    {
      std::lock_guard lock(mutex);
      l = link;
      new_epoch = epoch + 1;
      if (!l || pair.state() != PairState::Protected) {
        last_error = "failover: the pair is not PROTECTED";
        return false;
      }
    }
    recorder->flush_output();
    recorder->flush();
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    // Everything printed must be released (acknowledged) before the secondary takes over,
    // and the last release marker must be in the log: then nothing is repeated or lost.
    while (gate->held_bytes() > 0 && Clock::now() < deadline && l->is_open()) {
      recorder->flush();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    recorder->log_output_released(machine->icount(), vmm::OutputChannel::Console, gate->released_bytes());
    if (const uint64_t frames = gate->released_bytes(vmm::OutputChannel::Net); frames > 0)
      recorder->log_output_released(machine->icount(), vmm::OutputChannel::Net, frames);
    recorder->flush();
    if (arbitrated) {
      // Everything is released: give the lease up so the secondary acquires it at once
      // (its epoch comes from the arbiter, not from us). Acks no longer release anything
      // either: the secondary goes live without waiting for them to age.
      acks.disarm();
      lease->release();
      new_epoch = epoch_now();
    }
    wire::Envelope e;
    e.mutable_handover()->set_icount(machine->icount());
    e.mutable_handover()->set_new_epoch(arbitrated ? 0 : new_epoch);
    e.mutable_handover()->set_released_output(gate->released_bytes());
    peer.send(l, std::move(e));
    spdlog::info("handed over at icount {} (epoch {}); this node becomes a standby secondary", machine->icount(),
                 new_epoch);
    // Become an empty standby: drop the VM and the console, keep listening.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    l->close("handover complete");
    machine.reset();
    recorder.reset();
    sink.reset();
    gate.reset();
    console.reset();
    {
      std::lock_guard lock(mutex);
      pair.to(Role::Secondary, PairState::Standby, "planned handover");
      link.reset();
      epoch = new_epoch;
    }
    store_epoch(new_epoch);
    make_transport();
    return true;
  }

  void secondary_loop() {
    for (;;) {
      std::unique_lock lock(mutex);
      cv.wait(lock, [this] { return stopping || !sync_chunks.empty() || (stream && true); });
      if (stopping) return;
      if (!sync_chunks.empty()) {
        wire::SyncChunk chunk = std::move(sync_chunks.front());
        sync_chunks.pop_front();
        std::shared_ptr<Link> l = link;
        lock.unlock();
        apply_sync_chunk(chunk, l);
        continue;
      }
      lock.unlock();
      if (replay_until_promotion()) {
        go_live();
        return primary_loop();
      }
    }
  }

  // Test hook (NodeTestHooks::sync_apply_delay): the last sync chunk is held back.
  void delay_sync_apply_for_tests() const {
    const auto delay = cfg.test.sync_apply_delay;
    if (delay.count() > 0) std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(delay, std::chrono::seconds(10)));
  }

  // One pre-copy message, already in its place (SyncSequence, on the I/O thread): message
  // 0 builds a fresh machine of the size its part names; every part is applied as it
  // comes and acknowledged; the closing message carries the core state and must leave the
  // machine at the primary's icount and state hash.
  void apply_sync_chunk(const wire::SyncChunk& chunk, const std::shared_ptr<Link>& l) {
    try {
      const checkpoint::StreamInfo info = checkpoint::inspect(chunk.checkpoint());
      if (info.kind != checkpoint::Kind::Incremental || info.has_core != chunk.last()) {
        throw std::runtime_error(fmt::format("sync message {} holds a {} checkpoint {} core state; expected a part{}",
                                             chunk.sequence(), checkpoint::to_string(info.kind),
                                             info.has_core ? "with" : "without",
                                             chunk.last() ? " with the core state" : " without core state"));
      }
      if (chunk.sequence() == 0) {
        vmm::MachineConfig mc;
        mc.mem_bytes = info.mem_bytes;
        if (info.disk_bytes > 0) {
          if (cfg.disk.empty()) throw std::runtime_error("the primary has a disk but [vm] disk is not set here");
          std::filesystem::resize_file(cfg.disk, info.disk_bytes);  // must exist; contents come next
        }
        mc.disk_path = info.disk_bytes > 0 ? cfg.disk : "";
        replayer.reset();
        stream.reset();
        tail.reset();
        machine.reset();
        world.current = nullptr;
        machine.emplace(mc, world);
      }
      if (!machine) throw std::runtime_error("sync message " + std::to_string(chunk.sequence()) + " without a machine");
      if (chunk.last()) delay_sync_apply_for_tests();
      checkpoint::apply(*machine, chunk.checkpoint());
      if (!chunk.last()) {
        peer.send_sync_ack(l, chunk.sequence(), chunk.checkpoint().size());
        return;
      }
      const uint64_t hash = machine->state_hash();
      if (hash != chunk.state_hash() || machine->icount() != chunk.icount()) {
        throw std::runtime_error(fmt::format("state hash after sync {:016x} differs from the primary's {:016x}",
                                             hash, chunk.state_hash()));
      }
      auto s = std::make_shared<StreamBatchSource>();
      tail = std::make_unique<OutputTail>();
      replayer = std::make_unique<hooks::Replayer>(*s, *tail, true);
      if (const std::string err = hooks::Replayer::check_header(chunk.log_header(), *machine); !err.empty()) {
        throw std::runtime_error(err);
      }
      world.current = replayer.get();
      icount = machine->icount();
      bool had_early_batches;
      {
        std::lock_guard lock(mutex);
        had_early_batches = !early_batches.empty();
        for (log::LogBatch& batch : early_batches) s->push(std::move(batch));
        early_batches.clear();
        if (s->gap().empty()) {
          stream = s;
          pair.to(PairState::Protected, "synced");
          sync.done = true;
        }
      }
      if (const std::string gap = s->gap(); !gap.empty()) throw std::runtime_error(gap);
      peer.send_sync_result(l, true, hash, "");
      if (had_early_batches) {
        // Batches that came early were not acknowledged on arrival: the primary's output
        // waits for this (the replay may idle at the frontier before its next ack).
        peer.send_ack(l, *s, machine->icount());
      }
      spdlog::info("synced at icount {} (state hash {:016x}): PROTECTED", machine->icount(), hash);
    } catch (const std::exception& e) {
      spdlog::error("sync failed: {}", e.what());
      peer.send_sync_result(l, false, 0, e.what());
      machine.reset();
      std::lock_guard lock(mutex);
      sync_chunks.clear();  // the rest of this sync has nothing to apply to
      early_batches.clear();
      last_error = std::string("sync failed: ") + e.what();
      pair.to(PairState::Standby, "sync failed");
      if (l) l->close("sync failed");
    }
  }

  // Replays the stream behind the primary. True when this node must go live.
  bool replay_until_promotion() {
    std::shared_ptr<StreamBatchSource> s;
    {
      std::lock_guard lock(mutex);
      s = stream;
      if (!s || !machine) return false;
    }
    const ReplaySchedulingClass replay_class;
    auto last_ack = Clock::now();
    uint64_t audits_seen = 0;
    for (;;) {
      bool promote;
      {
        std::lock_guard lock(mutex);
        if (stopping) return false;
        if (abandon_replica) {
          abandon_replica = false;
          pair.to(PairState::Standby, "the replica is stale");
          stream.reset();
          sync = {};
          machine.reset();  // only the VM thread touches the machine: safe under the mutex
          replayer.reset();
          tail.reset();
          return false;
        }
        promote = promotion.has_value();
      }
      if (promote) s->close();
      const uint64_t target = s->complete_to();
      if (machine->icount() < target) {
        // In slices, so the executed icount the acks carry is at most a slice old: the
        // primary's flow control would otherwise see a whole batch (20 ms) of extra lag and
        // hold its guest for it.
        const vmm::RunResult r = machine->run_until(std::min(target, machine->icount() + kReplaySlice));
        icount = r.icount;
      } else if (promote) {
        // Everything received has been replayed: run out the records at the frontier.
        machine->run_until(machine->icount());
        return !replayer->divergence();
      } else {
        s->wait_for_more(std::chrono::milliseconds(20));
      }
      if (const auto& d = replayer->divergence()) {
        report_divergence(*d);
        return false;
      }
      for (size_t c = 0; c < vmm::kOutputChannels; ++c) {
        const auto channel = static_cast<vmm::OutputChannel>(c);
        tail->trim_released(channel, replayer->released_output(channel));
      }
      if (replayer->audits_checked() != audits_seen) {
        // Audits pass silently (a failing one is a divergence, above).
        audits_seen = replayer->audits_checked();
        last_audit_icount = machine->icount();
        last_audit_ok = true;
      }
      if (Clock::now() - last_ack > std::chrono::milliseconds(5)) {
        last_ack = Clock::now();
        std::shared_ptr<Link> l;
        {
          std::lock_guard lock(mutex);
          l = link;
        }
        peer.send_ack(l, *s, machine->icount());
      }
    }
  }

  // I/O thread: a log batch was missing (StreamBatchSource refused one out of sequence).
  // The replica cannot follow: it is dropped (STANDBY, never promoted) and the primary,
  // told as for a divergence, goes on STANDALONE.
  void on_log_gap(const std::shared_ptr<Link>& l, const std::shared_ptr<StreamBatchSource>& s) {
    const std::string gap = s->gap();
    {
      std::lock_guard lock(mutex);
      if (s != stream) return;
      spdlog::critical("the log from the primary has a gap ({}); dropping the replica", gap);
      last_error = gap;
      last_audit_ok = false;
      abandon_replica_locked(gap);
      pair.to(PairState::Standby, "a gap in the log");  // not PROTECTED: losing the link now must not promote it
    }
    peer.send_divergence(l, icount.load(), gap);
  }

  void report_divergence(const hooks::Divergence& d) {
    spdlog::critical("DIVERGENCE at icount {}: {} (log {:016x}, replay {:016x}); dropping the replica", d.icount,
                     d.what, d.expected, d.actual);
    std::shared_ptr<Link> l;
    {
      std::lock_guard lock(mutex);
      l = link;
      last_error = fmt::format("divergence at icount {}: {}", d.icount, d.what);
      last_audit_ok = false;
      pair.to(PairState::Standby, "divergence");
      stream.reset();
    }
    peer.send_divergence(l, d.icount, d.what, d.expected, d.actual);
    if (l) l->close("divergence");
    machine.reset();
  }

  // The promise in every Ack: not live before `promotion_holdoff` after the last message from
  // the primary on the link. The link is closed here (a promotion that is not a handover
  // starts from a lost link), so nothing acknowledged later can widen the primary's window.
  // A link closed by silence has waited this out already; one closed by an error may not.
  void wait_out_holdoff() {
    const auto holdoff = promotion_holdoff();
    const auto until = Clock::time_point(Clock::duration(last_heard_ns.load())) + holdoff;
    const auto waited_from = Clock::now();
    while (Clock::now() < until) {
      {
        std::lock_guard lock(mutex);
        if (stopping) return;
      }
      std::this_thread::sleep_for(std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(10)));
    }
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - waited_from);
    if (waited.count() > 0)
      spdlog::info("waited {} ms before going live: the primary may release acknowledged output until {} ms after "
                   "it was last heard", waited.count(), holdoff.count());
  }

  // The replica becomes the primary: same machine, now under a Recorder, with the output
  // it cannot confirm as released emitted again (at-least-once).
  void go_live() {
    fencing::Verdict v;
    uint64_t released_before;
    bool planned;
    {
      std::lock_guard lock(mutex);
      v = *promotion;
      promotion.reset();
      released_before = std::exchange(handover_released, 0);
      planned = planned_promotion;
    }
    const auto start = Clock::now();
    if (arbitrated && !planned) wait_out_holdoff();
    replayer->flush_output();
    const std::string unconfirmed = tail->unconfirmed(std::max(replayer->released_output(), released_before));
    // Network frames after the last release marker: no NIC backend on this node yet.
    const size_t unconfirmed_frames =
        tail->unconfirmed(vmm::OutputChannel::Net, replayer->released_output(vmm::OutputChannel::Net)).size();
    open_console();
    if (!unconfirmed.empty()) {
      console->write_output({reinterpret_cast<const uint8_t*>(unconfirmed.data()), unconfirmed.size()});
    }
    if (unconfirmed_frames > 0) spdlog::warn("{} unconfirmed network frames not re-sent: no NIC backend", unconfirmed_frames);
    {
      std::lock_guard lock(mutex);
      pair.to(Role::Primary, PairState::Standalone, "going live: " + v.why);
      epoch = v.new_epoch;
      link.reset();
      stream.reset();
    }
    store_epoch(v.new_epoch);
    make_transport();
    {
      std::lock_guard lock(mutex);
      promotion_note.clear();
    }
    spdlog::warn("LIVE as primary at icount {} with epoch {} ({}); re-emitted {} unconfirmed output bytes; took {:.1f} ms",
                 machine->icount(), v.new_epoch, v.why, unconfirmed.size(),
                 std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    replayer.reset();
    tail.reset();
  }
};

void PrimaryWorld::service(vmm::Machine& m) {
  gate_.pump();  // output held while the lease was being renewed late
  // The marker goes first: Recorder::service may flush with complete_to = this icount, and
  // the replica serves an icount once when it gets there, so a record logged here after
  // that flush would be skipped (a spurious "missed OUTPUT_RELEASED" divergence).
  log_release_markers(m);
  Recorder::service(m);
  run_.at_service(m);
}

bool PrimaryWorld::idle(vmm::Machine& m, uint64_t deadline) {
  log_release_markers(m);
  run_.at_idle(m);
  const bool woke = Recorder::idle(m, deadline);
  if (!woke && recording()) {
    // The node interrupted the wait to handle a command: the replayer must see this idle
    // too (as a zero skip), since the guest carries on after its WFI.
    log_record(m.icount(), log::IDLE_SKIP, 0);
    flush();
  }
  return woke;
}

Node::Node(NodeConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}

Node::~Node() {
  stop();
  if (impl_->vm_thread.joinable()) impl_->vm_thread.join();
  if (impl_->monitor_thread.joinable()) impl_->monitor_thread.join();
  if (impl_->lease) impl_->lease->stop();
  if (impl_->detector) impl_->detector->stop();
  if (auto t = impl_->current_transport()) t->stop();
}

void Node::start() {
  Impl& n = *impl_;
  if (const auto e = n.epochs.load()) n.epoch = *e;
  if (n.cfg.role == Role::Primary && n.cfg.guest.empty() && n.cfg.bios.empty())
    throw std::runtime_error("a primary needs [vm] guest or bios");
  try {
    n.lease = std::make_unique<fencing::LeaseKeeper>(n.cfg.fencing, n.cfg.node_name);
    fencing::DetectorConfig dc;
    dc.vm_id = n.cfg.vm_id;
    dc.psk = n.cfg.psk;
    dc.link = {std::chrono::milliseconds(n.cfg.heartbeat_ms), n.cfg.heartbeat_misses};
    dc.second = n.cfg.second_path;
    n.detector = std::make_unique<fencing::FailureDetector>(dc);
    n.detector->start();
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("fencing: ") + e.what());
  }
  n.lease->on_fenced = [&n](const std::string& why) { n.on_fenced(why); };
  n.lease->start();
  spdlog::info("fencing: arbiter {}; second heartbeat path {}", n.lease->describe(),
               n.detector->second_path_enabled()
                   ? fmt::format("{} -> {}", n.cfg.second_path.listen, n.cfg.second_path.peer)
                   : std::string("off"));
  n.make_transport();
  n.vm_thread = std::thread([&n] { n.vm_main(); });
  n.monitor_thread = std::thread([&n] { n.monitor_loop(); });
  if (n.cfg.role == Role::Primary && !n.cfg.peer.empty() && !n.arbitrated) {
    if (auto r = protect(n.cfg.peer); !r) spdlog::warn("protect {}: {}", n.cfg.peer, r.error().message);
  }
}

void Node::stop() {
  Impl& n = *impl_;
  std::shared_ptr<Link> l;
  {
    std::lock_guard lock(n.mutex);
    if (n.stopping) return;
    n.stopping = true;
    n.wake = 1;
    l = n.link;
  }
  n.cv.notify_all();
  if (n.stream) n.stream->close();
  if (l) l->close("node stopping");
  // A clean stop gives the lease back: the secondary need not wait for it to lapse.
  n.acks.disarm();
  if (n.lease && n.lease->holding()) n.lease->release();
  {
    std::lock_guard lock(n.mutex);
    n.stopped = true;
  }
  n.cv.notify_all();
}

void Node::wait() {
  std::unique_lock lock(impl_->mutex);
  impl_->cv.wait(lock, [this] { return impl_->stopped; });
}

NodeStatus Node::status() const {
  const Impl& n = *impl_;
  NodeStatus s;
  std::lock_guard lock(n.mutex);
  s.node_name = n.cfg.node_name;
  s.vm_id = n.cfg.vm_id;
  s.role = n.pair.role();
  s.state = n.pair.state();
  s.epoch = n.epoch;
  s.icount = n.icount.load();
  s.peer_icount = n.peer_executed.load();
  if (n.pair.role() == Role::Primary && n.link) {
    s.lag_instructions = s.icount > s.peer_icount ? s.icount - s.peer_icount : 0;
    s.lag_ms = s.lag_instructions / 1e6;
  }
  s.log_rate_kb_s = n.log_rate_kb_s;
  s.log_bytes = n.log_bytes.load();
  s.last_audit_icount = n.last_audit_icount.load();
  s.last_audit_ok = n.last_audit_ok.load();
  s.sync = n.sync;
  s.peer = n.link ? n.peer_address : n.cfg.peer;
  // The address a client dials: the configured host (on a real host or a lab namespace the
  // console is not on 127.0.0.1) with the real port (listen port 0 picks one).
  std::string console_host = "127.0.0.1";
  if (!n.cfg.console_listen.empty()) {
    const std::string host = split_address(n.cfg.console_listen).first;
    if (host != "0.0.0.0" && host != "[::]") console_host = host;
  }
  s.console = n.console ? fmt::format("{}:{}", console_host, n.console->port()) : n.cfg.console_listen;
  s.last_error = n.last_error;
  s.pid = ::getpid();
  if (n.lease && n.detector) {
    const auto now = Clock::now();
    FencingStatus& f = s.fencing;
    f.arbiter = n.lease->describe();
    f.lease_ms_left = n.lease->lease_ms_left(now);
    f.ack_ms_left = n.pair.role() == Role::Primary ? n.acks.ms_left(now) : -1;
    // Fenced = this primary can release nothing: neither the lease nor fresh acks open its
    // gate. Not "holding() && ...": the keeper latches Fenced a moment before on_fenced()
    // sets the state, and in between a thawed old primary looked live (a drill caught it).
    f.fenced = n.pair.state() == PairState::Fenced ||
               (n.pair.role() == Role::Primary && n.arbitrated && !n.lease->may_release_output(now) && f.ack_ms_left < 0);
    f.link = n.link && n.detector->link_alive(now) ? "up" : "down";
    f.heartbeat_path = !n.detector->second_path_enabled() ? "off" : n.detector->second_path_alive(now) ? "up" : "down";
    const fencing::PeerVerdict v = n.detector->verdict(now);
    f.degraded = n.detector->second_path_enabled() &&
                 (v == fencing::PeerVerdict::LinkSilent || v == fencing::PeerVerdict::SecondPathSilent);
    f.lease = n.lease->last_outcome();
    f.promotion = n.promotion_note;
  }
  return s;
}

Result<void> Node::protect(const std::string& peer) { return impl_->protect_peer(peer); }

Result<void> Node::Impl::protect_peer(const std::string& peer) {
  Impl& n = *this;
  {
    std::lock_guard lock(n.mutex);
    if (n.pair.role() != Role::Primary) return Error{ErrorKind::WrongState, "only a primary can protect"};
    if (n.pair.state() == PairState::Fenced)
      return Error{ErrorKind::WrongState, "this primary is FENCED: it must be re-synced as a secondary first"};
    if (n.arbitrated && !n.lease->holding())
      return Error{ErrorKind::Unavailable, "this primary does not hold the lease (yet)"};
    if (n.link || n.pending_link) return Error{ErrorKind::WrongState, "already protected or syncing with " + n.peer_address};
  }
  std::pair<std::string, uint16_t> hp;
  try {
    hp = split_address(peer);
  } catch (const std::exception& e) {
    return Error{ErrorKind::Invalid, e.what()};
  }
  n.current_transport()->connect(hp.first, hp.second, [&n, peer](std::shared_ptr<Link> l, std::string error) {
    if (!l) {
      std::lock_guard lock(n.mutex);
      n.last_error = "protect " + peer + ": " + error;
      spdlog::warn("{}", n.last_error);
      return;
    }
    n.attach(l);
    l->start();
    std::lock_guard lock(n.mutex);
    n.pending_link = l;
    n.wake = 1;
    n.cv.notify_all();
  });
  return {};
}

Result<void> Node::unprotect() {
  Impl& n = *impl_;
  std::lock_guard lock(n.mutex);
  if (n.pair.role() != Role::Primary) return Error{ErrorKind::WrongState, "only a primary can unprotect"};
  n.unprotect_requested = true;
  n.wake = 1;
  n.cv.notify_all();
  return {};
}

Result<void> Node::failover() {
  Impl& n = *impl_;
  std::lock_guard lock(n.mutex);
  if (n.pair.role() != Role::Primary || n.pair.state() != PairState::Protected)
    return Error{ErrorKind::WrongState, "failover needs a PROTECTED primary"};
  n.handover_requested = true;
  n.wake = 1;
  n.cv.notify_all();
  return {};
}

}  // namespace tandem::replicator
