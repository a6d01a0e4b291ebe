#include "replicator/fencing_coordinator.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <functional>
#include <utility>
#include <vector>

namespace tandem::replicator {

// Secondary: ask the arbiter; the grant turns into a promotion on the VM thread.
void FencingCoordinator::start_promotion_locked(const std::string& why, bool planned) {
  n_.suspect_since = Clock::now();
  n_.planned_promotion = planned;
  n_.link_lost_at.reset();
  n_.promotion_note = "asking the arbiter (" + why + ")";
  n_.lease->acquire(n_.epoch, [this, why](const fencing::Grant& g) {
    bool give_back = false;
    {
      std::lock_guard lock(n_.mutex);
      if (n_.pair.role() == Role::Secondary && n_.pair.state() == PairState::Protected && n_.suspect_since && !n_.abandon_replica) {
        n_.promotion = fencing::Verdict{true, g.epoch, "arbiter granted epoch " + std::to_string(g.epoch) + " after " + why};
        n_.promotion_note = "granted epoch " + std::to_string(g.epoch) + ": going live";
        n_.suspect_since.reset();
        if (n_.stream) n_.stream->close();
      } else {
        give_back = true;  // the replica went meanwhile: nothing to go live with
      }
    }
    n_.cv.notify_all();
    if (give_back) n_.lease->release();
  }, [this](const fencing::Grant& g) {
    // The primary advanced the epoch without this node: its replica may never go live.
    std::lock_guard lock(n_.mutex);
    if (n_.pair.role() == Role::Secondary && n_.suspect_since && !n_.planned_promotion)
      abandon_replica_locked("the arbiter refused this replica (" + g.why + ")");
  });
}

// Secondary: the replica can no longer become the primary (the primary went on alone).
void FencingCoordinator::abandon_replica_locked(const std::string& why) {
  spdlog::warn("{}: this replica is stale; dropping it (STANDBY) until the primary protects this node again", why);
  if (n_.suspect_since) n_.lease->cancel();
  n_.suspect_since.reset();
  n_.link_lost_at.reset();
  n_.promotion_note.clear();
  n_.abandon_replica = true;
  if (n_.stream) n_.stream->close();
  n_.cv.notify_all();
}

void FencingCoordinator::fencing_tick_locked(Clock::time_point now, std::vector<std::function<void()>>& after) {
  if (!n_.arbitrated || !n_.detector) return;
  const bool path_on = n_.detector->second_path_enabled();
  const auto heard_after = [&](Clock::time_point t) { return path_on && n_.detector->second_path_last_heard() > t; };
  if (n_.pair.role() == Role::Primary && n_.link_lost_at && n_.pair.state() != PairState::Fenced) {
    const Clock::time_point t = *n_.link_lost_at;
    if (heard_after(t) || (path_on && n_.detector->second_path_peer_closed())) {
      const bool gone = !heard_after(t);
      n_.link_lost_at.reset();
      n_.pair.to(PairState::Standalone, "the secondary is heard on the second path, or gone");
      spdlog::warn("the secondary {} on the second path: STANDALONE, keeping the lease; its replica is stale",
                   gone ? "closed its connection (its process is gone)" : "is still heard");
      if (n_.gate) n_.gate->set_gated(false);
      n_.wake = 1;
    } else if (!path_on || !n_.detector->second_path_alive(now)) {
      // Dead or cut off, the secondary's replica misses what this node releases from now
      // on: move the epoch past it at the arbiter first, so it can never be promoted.
      n_.link_lost_at.reset();
      n_.promotion_note = "advancing the epoch: the secondary is silent on every path";
      spdlog::warn("the secondary is silent on every path: asking {} to advance epoch {}; output held until it "
                   "confirms",
                   n_.lease->describe(), n_.epoch);
      after.push_back([this] { n_.lease->advance([this](const fencing::Grant& g) { on_epoch_advanced(g); }); });
    }
  }
  if (n_.pair.role() == Role::Secondary && n_.pair.state() == PairState::Protected && !n_.promotion) {
    if (n_.link_lost_at) {
      const Clock::time_point t = *n_.link_lost_at;
      if (heard_after(t)) {
        abandon_replica_locked("the primary lost the link but is heard on the second path");
      } else if (!path_on || !n_.detector->second_path_alive(now)) {
        spdlog::warn("primary suspected: {}; asking {} for the lease", fencing::to_string(n_.detector->verdict(now)),
                     n_.lease->describe());
        start_promotion_locked("the primary is silent on every path");
      }
    } else if (n_.suspect_since) {
      n_.promotion_note = "asking the arbiter: " + n_.lease->last_outcome();
      if (heard_after(*n_.suspect_since) && !n_.planned_promotion) {
        abandon_replica_locked("the primary is heard again on the second path while this node asked for the lease");
      } else if (now - *n_.suspect_since > 3 * n_.cfg.fencing.lease) {
        abandon_replica_locked(fmt::format("the arbiter kept the lease with the primary for {} ms ({})",
                                           (3 * n_.cfg.fencing.lease).count(), n_.lease->last_outcome()));
      }
    }
  }
  if (n_.pair.role() == Role::Primary && n_.pair.state() == PairState::Fenced && !n_.cfg.peer.empty() && !n_.rejoin_link &&
      !n_.rejoin_pending && !n_.demote_requested && now >= n_.next_rejoin) {
    n_.next_rejoin = now + std::chrono::seconds(1);
    n_.rejoin_pending = true;  // one attempt at a time: a partition holds connects open
    after.push_back([this] { try_rejoin(); });
  }
}

// Fenced primary: knock at the old peer. A live primary there refuses this node's older
// epoch with "resync": then this node becomes an empty standby secondary.
void FencingCoordinator::try_rejoin() {
  std::pair<std::string, uint16_t> hp;
  try {
    hp = split_address(n_.cfg.peer);
  } catch (const std::exception&) {
    std::lock_guard lock(n_.mutex);
    n_.rejoin_pending = false;
    return;
  }
  n_.current_transport()->connect(hp.first, hp.second, [this](std::shared_ptr<Link> l, std::string error) {
    {
      std::lock_guard lock(n_.mutex);
      n_.rejoin_pending = false;
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
        std::lock_guard lock(n_.mutex);
        if (n_.rejoin_link == weak.lock()) n_.rejoin_link.reset();
      }
      if (reason.find("resync") != std::string::npos) on_rejoin_refused(reason);
    };
    {
      std::lock_guard lock(n_.mutex);
      n_.rejoin_link = l;
    }
    l->start();
  });
}

void FencingCoordinator::on_rejoin_refused(const std::string& reason) {
  std::lock_guard lock(n_.mutex);
  if (n_.pair.role() != Role::Primary || n_.pair.state() != PairState::Fenced || n_.demote_requested) return;
  spdlog::warn("the live primary at {} refused this node ({}): becoming a STANDBY secondary to be re-synced",
               n_.cfg.peer, reason);
  n_.demote_requested = true;
  n_.wake = 1;
  n_.cv.notify_all();
}

// LeaseKeeper: the arbiter moved this primary's epoch past its silent secondary. The
// secondary's replica is refused from now on, so output may flow without its acks.
void FencingCoordinator::on_epoch_advanced(const fencing::Grant& g) {
  uint64_t before;
  {
    std::lock_guard lock(n_.mutex);
    if (n_.pair.role() != Role::Primary || n_.pair.state() == PairState::Fenced || n_.stopping) return;
    before = std::exchange(n_.epoch, g.epoch);
    n_.pair.to(PairState::Standalone, "the epoch advanced past the silent secondary");
    n_.promotion_note.clear();
    if (n_.gate) n_.gate->set_gated(false);
    n_.wake = 1;
  }
  n_.store_epoch(g.epoch);
  n_.make_transport();  // a secondary protected from now on is told the new epoch
  spdlog::warn("epoch advanced {} -> {} at {}: STANDALONE; the silent secondary's replica is stale (refused by the "
               "arbiter, re-synced when it is protected again)",
               before, g.epoch, n_.lease->describe());
  n_.cv.notify_all();
}

// LeaseKeeper: the lease is lost (refused renewal) or yielded. No output from here on.
void FencingCoordinator::on_fenced(const std::string& why) {
  std::shared_ptr<Link> l;
  {
    std::lock_guard lock(n_.mutex);
    if (n_.pair.role() != Role::Primary) return;
    n_.acks.disarm();
    n_.pair.to(PairState::Fenced, "fenced: " + why);
    n_.last_error = "fenced: " + why;
    n_.link_lost_at.reset();
    n_.promotion_note.clear();
    l = std::exchange(n_.link, nullptr);
    n_.wake = 1;
    n_.next_rejoin = Clock::now() + std::chrono::seconds(1);
  }
  spdlog::critical("FENCED: {}; this node releases no output until it is re-synced as a secondary", why);
  n_.cv.notify_all();
  if (l) l->close("fenced");
}

// ---- monitor: heartbeats both ways ----------------------------------------------------
void FencingCoordinator::monitor_loop() {
  const auto interval = std::chrono::milliseconds(n_.cfg.heartbeat_ms);
  const int64_t limit_ns = int64_t{n_.cfg.heartbeat_ms} * n_.cfg.heartbeat_misses * 1'000'000;
  std::shared_ptr<Link> counted_link;  // the link whose received bytes were last counted
  uint64_t counted_bytes = 0;
  std::unique_lock lock(n_.mutex);
  while (!n_.stopping) {
    n_.cv.wait_for(lock, interval);
    if (n_.stopping) break;
    std::shared_ptr<Link> l = n_.link;
    if (l) {
      // A pre-copy part (MiBs) can take longer than the heartbeat limit to arrive on a
      // slow or loaded link, and heartbeats queue behind it: bytes arriving are the peer.
      const uint64_t received = l->stats().bytes_received;
      if (l == counted_link && received != counted_bytes) {
        n_.last_heard_ns = Clock::now().time_since_epoch().count();
        if (n_.detector) n_.detector->link_heard();
      }
      counted_link = l;
      counted_bytes = received;
    } else {
      counted_link.reset();
    }
    const bool primary = n_.pair.role() == Role::Primary;
    // Log rate for status.
    const auto now = Clock::now();
    const double dt = std::chrono::duration<double>(now - n_.rate_mark).count();
    if (dt >= 1.0) {
      n_.log_rate_kb_s = (n_.log_bytes.load() - n_.rate_mark_bytes) / dt / 1024.0;
      n_.rate_mark = now;
      n_.rate_mark_bytes = n_.log_bytes.load();
    }
    std::vector<std::function<void()>> after;
    fencing_tick_locked(now, after);
    lock.unlock();
    for (auto& f : after) f();
    if (l) {
      const auto sent_ns = static_cast<uint64_t>(now.time_since_epoch().count());
      if (primary) n_.acks.heartbeat_sent(now.time_since_epoch().count(), now);
      n_.peer.send_heartbeat(l, sent_ns, n_.icount.load(), primary ? 0 : n_.peer_heartbeat_ns.load());
      if (now.time_since_epoch().count() - n_.last_heard_ns.load() > limit_ns) {
        l->close(fmt::format("no message from the peer for {} ms", limit_ns / 1'000'000));
      }
    }
    lock.lock();
  }
}

}  // namespace tandem::replicator
