#include "replicator/secondary_role.h"

#include <pthread.h>
#include <sched.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include "hostnet/announce.h"
#include "replicator/fencing_coordinator.h"
#include "replicator/precopy_receiver.h"
#include "replicator/primary_role.h"

namespace tandem::replicator {

namespace {

constexpr uint64_t kReplaySlice = 1'000'000;  // instructions between acks

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

NextRole SecondaryRole::run() {
  for (;;) {
    std::unique_lock lock(n_.mutex);
    n_.cv.wait(lock, [this] { return n_.stopping || !n_.sync_chunks.empty() || (n_.stream && true); });
    if (n_.stopping) return NextRole::Stop;
    if (!n_.sync_chunks.empty()) {
      wire::SyncChunk chunk = std::move(n_.sync_chunks.front());
      n_.sync_chunks.pop_front();
      std::shared_ptr<Link> l = n_.link;
      lock.unlock();
      receiver_.apply(chunk, l);
      continue;
    }
    lock.unlock();
    if (replay_until_promotion()) {
      go_live();
      return NextRole::Primary;
    }
  }
}

// Replays the stream behind the primary. True when this node must go live.
bool SecondaryRole::replay_until_promotion() {
  std::shared_ptr<StreamBatchSource> s;
  {
    std::lock_guard lock(n_.mutex);
    s = n_.stream;
    if (!s || !n_.machine) return false;
  }
  const ReplaySchedulingClass replay_class;
  auto last_ack = Clock::now();
  uint64_t audits_seen = 0;
  for (;;) {
    bool promote;
    {
      std::lock_guard lock(n_.mutex);
      if (n_.stopping) return false;
      if (n_.abandon_replica) {
        n_.abandon_replica = false;
        n_.pair.to(PairState::Standby, "the replica is stale");
        n_.stream.reset();
        n_.sync = {};
        n_.machine.reset();  // only the VM thread touches the machine: safe under the mutex
        n_.replayer.reset();
        n_.tail.reset();
        return false;
      }
      promote = n_.promotion.has_value();
    }
    if (promote) s->close();
    const uint64_t target = s->complete_to();
    if (n_.machine->icount() < target) {
      // In slices, so the executed icount the acks carry is at most a slice old: the
      // primary's flow control would otherwise see a whole batch (20 ms) of extra lag and
      // hold its guest for it.
      const vmm::RunResult r = n_.machine->run_until(std::min(target, n_.machine->icount() + kReplaySlice));
      n_.icount = r.icount;
    } else if (promote) {
      // Everything received has been replayed: run out the records at the frontier.
      n_.machine->run_until(n_.machine->icount());
      return !n_.replayer->divergence();
    } else {
      s->wait_for_more(std::chrono::milliseconds(20));
    }
    if (const auto& d = n_.replayer->divergence()) {
      report_divergence(*d);
      return false;
    }
    for (size_t c = 0; c < vmm::kOutputChannels; ++c) {
      const auto channel = static_cast<vmm::OutputChannel>(c);
      n_.tail->trim_released(channel, n_.replayer->released_output(channel));
    }
    if (n_.replayer->audits_checked() != audits_seen) {
      // Audits pass silently (a failing one is a divergence, above).
      audits_seen = n_.replayer->audits_checked();
      n_.last_audit_icount = n_.machine->icount();
      n_.last_audit_ok = true;
    }
    if (Clock::now() - last_ack > std::chrono::milliseconds(5)) {
      last_ack = Clock::now();
      std::shared_ptr<Link> l;
      {
        std::lock_guard lock(n_.mutex);
        l = n_.link;
      }
      n_.peer.send_ack(l, *s, n_.machine->icount());
    }
  }
}

// I/O thread: a log batch was missing (StreamBatchSource refused one out of sequence).
// The replica cannot follow: it is dropped (STANDBY, never promoted) and the primary,
// told as for a divergence, goes on STANDALONE.
void SecondaryRole::on_log_gap(const std::shared_ptr<Link>& l, const std::shared_ptr<StreamBatchSource>& s) {
  const std::string gap = s->gap();
  {
    std::lock_guard lock(n_.mutex);
    if (s != n_.stream) return;
    spdlog::critical("the log from the primary has a gap ({}); dropping the replica", gap);
    n_.last_error = gap;
    n_.last_audit_ok = false;
    fencing_.abandon_replica_locked(gap);
    n_.pair.to(PairState::Standby, "a gap in the log");  // not PROTECTED: losing the link now must not promote it
  }
  n_.peer.send_divergence(l, n_.icount.load(), gap);
}

void SecondaryRole::report_divergence(const hooks::Divergence& d) {
  spdlog::critical("DIVERGENCE at icount {}: {} (log {:016x}, replay {:016x}); dropping the replica", d.icount,
                   d.what, d.expected, d.actual);
  std::shared_ptr<Link> l;
  {
    std::lock_guard lock(n_.mutex);
    l = n_.link;
    n_.last_error = fmt::format("divergence at icount {}: {}", d.icount, d.what);
    n_.last_audit_ok = false;
    n_.pair.to(PairState::Standby, "divergence");
    n_.stream.reset();
  }
  n_.peer.send_divergence(l, d.icount, d.what, d.expected, d.actual);
  if (l) l->close("divergence");
  n_.machine.reset();
}

// The promise in every Ack: not live before `promotion_holdoff` after the last message from
// the primary on the link. The link is closed here (a promotion that is not a handover
// starts from a lost link), so nothing acknowledged later can widen the primary's window.
// A link closed by silence has waited this out already; one closed by an error may not.
void SecondaryRole::wait_out_holdoff() {
  const auto holdoff = n_.promotion_holdoff();
  const auto until = Clock::time_point(Clock::duration(n_.last_heard_ns.load())) + holdoff;
  const auto waited_from = Clock::now();
  while (Clock::now() < until) {
    {
      std::lock_guard lock(n_.mutex);
      if (n_.stopping) return;
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
void SecondaryRole::go_live() {
  fencing::Verdict v;
  uint64_t released_before;
  bool planned;
  {
    std::lock_guard lock(n_.mutex);
    v = *n_.promotion;
    n_.promotion.reset();
    released_before = std::exchange(n_.handover_released, 0);
    planned = n_.planned_promotion;
  }
  const auto start = Clock::now();
  if (n_.arbitrated && !planned) wait_out_holdoff();
  n_.replayer->flush_output();
  const std::string unconfirmed = n_.tail->unconfirmed(std::max(n_.replayer->released_output(), released_before));
  // Network frames after the last release marker: sent again (TCP drops duplicates).
  const std::vector<std::string> unconfirmed_frames =
      n_.tail->unconfirmed(vmm::OutputChannel::Net, n_.replayer->released_output(vmm::OutputChannel::Net));
  try {
    n_.open_net();
  } catch (const std::exception& e) {
    spdlog::error("[net] backend: {}; the guest runs with its NIC unplugged from this host", e.what());
  }
  primary_.open_console();
  if (!unconfirmed.empty()) {
    n_.console->write_output({reinterpret_cast<const uint8_t*>(unconfirmed.data()), unconfirmed.size()});
  }
  if (n_.net_port) {
    // The LAN learns the guest's MAC at this host's port first, then gets what it may not have seen.
    const std::vector<uint8_t> announcement = hostnet::rarp_announcement(n_.cfg.net->mac);
    for (int i = 0; i < hostnet::kAnnouncements; ++i) n_.net_port->send(announcement);
    for (const std::string& f : unconfirmed_frames)
      n_.net_port->send({reinterpret_cast<const uint8_t*>(f.data()), f.size()});
    spdlog::info("[net] announced {} on the LAN; re-sent {} unconfirmed frames", hostnet::mac_text(n_.cfg.net->mac),
                 unconfirmed_frames.size());
  }
  {
    std::lock_guard lock(n_.mutex);
    n_.pair.to(Role::Primary, PairState::Standalone, "going live: " + v.why);
    n_.epoch = v.new_epoch;
    n_.link.reset();
    n_.stream.reset();
  }
  n_.store_epoch(v.new_epoch);
  n_.make_transport();
  {
    std::lock_guard lock(n_.mutex);
    n_.promotion_note.clear();
  }
  spdlog::warn("LIVE as primary at icount {} with epoch {} ({}); re-emitted {} unconfirmed output bytes; took {:.1f} ms",
               n_.machine->icount(), v.new_epoch, v.why, unconfirmed.size(),
               std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  n_.replayer.reset();
  n_.tail.reset();
}

}  // namespace tandem::replicator
