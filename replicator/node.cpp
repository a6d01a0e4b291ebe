// The live pair. One Node per tandemd: a primary runs the guest with a Recorder whose
// batches stream to the secondary and whose console output waits behind the output rule;
// a secondary rebuilds the machine from the primary's pre-copy checkpoints, replays the
// stream a little behind it, and goes live when the primary is lost or hands over.
//
// This file is the façade and the links: which link is in use, what each message from the
// peer does, the VM thread's choice of role, and Node's public calls. The parts, each in
// its own file, share the node's state through NodeCore (node_core.h, one mutex):
//   PrimaryRole (primary_role.*)        boot, run loop, throttle, handover, demotion;
//   SecondaryRole (secondary_role.*)    replay until promotion, go-live;
//   PrecopySender / PrecopyReceiver     the pre-copy, each side (precopy_sender.*, _receiver.*);
//   FencingCoordinator                  the monitor thread and every fencing decision;
//   PeerSession (peer_session.*)        every message to the peer (acks from one place);
//   PairStateMachine, EpochStore, OutputGate, PrimaryWorld.
//
// Threads: the VM thread owns the machine and its Worlds; the transport's I/O thread runs
// link callbacks; a monitor thread sends heartbeats, watches the peer and makes the
// fencing decisions; the LeaseKeeper's thread talks to the arbiter; the FailureDetector's
// thread runs the second heartbeat path. Shared state is under `mutex`; the machine is
// touched only by the VM thread. Fencing: fencing_coordinator.h and docs/fencing.md.
#include "replicator/node.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "replicator/fencing_coordinator.h"
#include "replicator/node_core.h"
#include "replicator/precopy_receiver.h"
#include "replicator/precopy_sender.h"
#include "replicator/primary_role.h"
#include "replicator/secondary_role.h"

namespace tandem::replicator {

// The Node's own part: the links (which one is in use, what each message does) and the
// VM thread's choice of role. What each role does is in its own file.
struct Node::Impl final : NodeCore {
  PrecopySender sender{*this};
  PrecopyReceiver receiver{*this};
  FencingCoordinator coordinator{*this};
  PrimaryRole primary{*this, sender};
  SecondaryRole secondary{*this, receiver, primary, coordinator};
  std::thread vm_thread;
  std::thread monitor_thread;

  explicit Impl(NodeConfig c) : NodeCore(std::move(c)) {
    NodeCore::on_incoming = [this](std::shared_ptr<Link> l) { accept_primary(std::move(l)); };
  }

  Result<void> protect_peer(const std::string& peer);

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
          secondary.on_log_gap(l, s);
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
        receiver.on_chunk(l, std::move(*e.mutable_sync_chunk()));
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
            coordinator.start_promotion_locked("planned handover", /*planned=*/true);
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

  // ---- VM thread ----------------------------------------------------------------------
  void vm_main() {
    try {
      NextRole next = pair.role() == Role::Primary ? NextRole::Primary : NextRole::Secondary;
      if (next == NextRole::Primary) {
        if (arbitrated && !primary.wait_for_boot_lease()) return;
        primary.boot();
        if (arbitrated && !cfg.peer.empty()) {
          if (auto r = protect_peer(cfg.peer); !r) spdlog::warn("protect {}: {}", cfg.peer, r.error().message);
        }
      }
      // A primary that hands over becomes a secondary; a secondary that goes live, a primary.
      while (next != NextRole::Stop) next = next == NextRole::Primary ? primary.run() : secondary.run();
    } catch (const std::exception& e) {
      std::lock_guard lock(mutex);
      last_error = e.what();
      pair.to(PairState::Failed, std::string("the VM thread stopped: ") + e.what());
      spdlog::critical("VM thread stopped: {}", e.what());
    }
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
  n.lease->on_fenced = [&n](const std::string& why) { n.coordinator.on_fenced(why); };
  n.lease->start();
  spdlog::info("fencing: arbiter {}; second heartbeat path {}", n.lease->describe(),
               n.detector->second_path_enabled()
                   ? fmt::format("{} -> {}", n.cfg.second_path.listen, n.cfg.second_path.peer)
                   : std::string("off"));
  n.make_transport();
  n.vm_thread = std::thread([&n] { n.vm_main(); });
  n.monitor_thread = std::thread([&n] { n.coordinator.monitor_loop(); });
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
  if (n.gate && n.pair.role() == Role::Primary) {
    const auto fill = [&](vmm::OutputChannel c, control::OutputStatus& o) {
      const OutputGate::ChannelState g = n.gate->state(c);
      o = {g.held_bytes, g.held_items, g.released_bytes, g.released_items, g.latency_p50_us, g.latency_max_us};
    };
    fill(vmm::OutputChannel::Console, s.console_output);
    fill(vmm::OutputChannel::Net, s.net_output);
  }
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
