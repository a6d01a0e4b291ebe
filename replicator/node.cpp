// Why this file is still over 600 lines: issue 15 splits it by responsibility. The output
// gate, the pair state table (pair_state.*), EpochStore, PeerSession, the transport's epoch
// filter, the shared state (node_core.h), PrimaryWorld and the pre-copy sender and receiver
// (precopy_sender.*, precopy_receiver.*) have moved out; PrimaryRole (boot, run loop,
// throttle, handover), SecondaryRole (replay, go-live) and FencingCoordinator are still the
// Impl methods below, and are the next pieces to move.
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
#include "replicator/node_core.h"
#include "replicator/precopy_receiver.h"
#include "replicator/precopy_sender.h"

namespace tandem::replicator {

namespace {

constexpr uint64_t kSlice = 2'000'000;          // instructions between command checks
constexpr uint64_t kReplaySlice = 1'000'000;     // secondary: instructions between acks
constexpr uint64_t kAuditInterval = 10'000'000;  // state-hash audits in the stream

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

}  // namespace

struct Node::Impl final : NodeCore, PrimaryRun {
  PrecopySender precopy_sender{*this};
  PrecopyReceiver precopy_receiver{*this};
  std::thread vm_thread;
  std::thread monitor_thread;

  explicit Impl(NodeConfig c) : NodeCore(std::move(c)) {
    NodeCore::on_incoming = [this](std::shared_ptr<Link> l) { accept_primary(std::move(l)); };
  }

  Result<void> protect_peer(const std::string& peer);


  // PrimaryRun: called by the primary's World on the VM thread.
  void at_service(vmm::Machine& m) override { throttle(m); }
  void at_idle(vmm::Machine& m) override {
    icount = m.icount();
    if (sink) log_bytes = sink->bytes() + log_bytes_before;
  }

  // ---- transport --------------------------------------------------------------------
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
  void accept_primary(std::shared_ptr<Link> l) {
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
      case wire::Envelope::kSyncChunk:
        precopy_receiver.on_chunk(l, std::move(*e.mutable_sync_chunk()));
        return;
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

  void boot_primary() {
    vmm::MachineConfig mc;
    mc.mem_bytes = cfg.mem_mib << 20;
    mc.disk_path = cfg.disk;
    mc.bootargs = boot.append;
    open_console();
    machine.emplace(mc, world);
    boot.load_into(*machine);
    spdlog::info("booted {} ({} MiB) as primary, epoch {}", boot.identity_image(), cfg.mem_mib, epoch_now());
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
          precopy_sender.run(l);
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
        precopy_receiver.apply(chunk, l);
        continue;
      }
      lock.unlock();
      if (replay_until_promotion()) {
        go_live();
        return primary_loop();
      }
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
  if (n.cfg.role == Role::Primary && n.boot.empty())
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
