#include "replicator/primary_role.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include "replicator/precopy_sender.h"

namespace tandem::replicator {

namespace {

constexpr uint64_t kSlice = 2'000'000;          // instructions between command checks
constexpr uint64_t kAuditInterval = 10'000'000;  // state-hash audits in the stream

}  // namespace

// A primary runs only under a lease: acquire (retrying while another node holds it), then
// take the granted epoch. False when stopped meanwhile.
bool PrimaryRole::wait_for_boot_lease() {
  spdlog::info("asking {} for the lease before booting", n_.lease->describe());
  uint64_t granted;
  for (uint64_t known = n_.epoch_now();;) {
    n_.lease->acquire(known, [this](const fencing::Grant& g) {
      std::lock_guard lock(n_.mutex);
      n_.boot_grant = g.epoch;
      n_.cv.notify_all();
    }, [this](const fencing::Grant& g) {
      std::lock_guard lock(n_.mutex);
      n_.boot_refused = g;
      n_.cv.notify_all();
    });
    std::unique_lock lock(n_.mutex);
    n_.promotion_note = "acquiring the lease before boot";
    n_.cv.wait(lock, [this] { return n_.stopping || n_.boot_grant.has_value() || n_.boot_refused.has_value(); });
    if (n_.stopping) return false;
    if (n_.boot_refused) {
      // A cold boot continues no replica, so an epoch the arbiter advanced past this node's
      // does not make it stale: ask again from the arbiter's epoch (other refusals, e.g. a
      // corrupt lease record, are retried every lease/4 until an operator fixes them).
      const fencing::Grant refused = *std::exchange(n_.boot_refused, std::nullopt);
      spdlog::warn("lease before boot refused: {}; asking again from epoch {}", refused.why,
                   std::max(known, refused.epoch));
      n_.promotion_note = "lease before boot refused: " + refused.why;
      if (refused.epoch <= known)
        n_.cv.wait_for(lock, std::max(n_.cfg.fencing.lease / 4, std::chrono::milliseconds(10)), [this] { return n_.stopping; });
      if (n_.stopping) return false;
      known = std::max(known, refused.epoch);
      continue;
    }
    granted = *n_.boot_grant;
    n_.epoch = granted;
    n_.promotion_note.clear();
    break;
  }
  n_.store_epoch(granted);
  n_.make_transport();  // the handshake presents the granted epoch
  spdlog::info("lease granted: primary at epoch {}", granted);
  return true;
}

void PrimaryRole::at_idle(vmm::Machine& m) {
  n_.icount = m.icount();
  if (n_.sink) n_.log_bytes = n_.sink->bytes() + n_.log_bytes_before;
}

void PrimaryRole::open_console() {
  if (n_.cfg.console_listen.empty()) {
    n_.console = std::make_unique<console::TcpConsole>("127.0.0.1", 0);
  } else {
    const auto [host, port] = split_address(n_.cfg.console_listen);
    n_.console = std::make_unique<console::TcpConsole>(host, port);
  }
  n_.gate = std::make_unique<OutputGate>(n_.console.get(), n_.net_port.get());  // open_net() first
  if (n_.arbitrated) {
    if (!n_.release_policy) n_.release_policy = std::make_unique<fencing::LeaseReleasePolicy>(*n_.lease, n_.acks);
    n_.gate->set_release_policy(n_.release_policy.get());
  }
  hooks::RecorderOptions options;
  options.audit_interval = kAuditInterval;
  options.time = hooks::GuestTime::Wall;
  options.poll_interval = 1 << 18;
  options.interrupt_flag = &n_.wake;
  options.net = n_.net_port.get();  // received frames are logged (NET_RX) and shipped
  n_.recorder = std::make_unique<PrimaryWorld>(*this, *n_.console, *n_.gate, options);
  n_.world.current = n_.recorder.get();
  spdlog::info("console listening on {}:{}", n_.cfg.console_listen.empty() ? "127.0.0.1" : split_address(n_.cfg.console_listen).first,
               n_.console->port());
}

void PrimaryRole::boot() {
  vmm::MachineConfig mc;
  mc.mem_bytes = n_.cfg.mem_mib << 20;
  mc.disk_path = n_.cfg.disk;
  mc.bootargs = n_.boot.append;
  mc.nic = n_.nic_config();
  n_.open_net();  // a primary that cannot open its [net] backend does not boot (FAILED, with the reason)
  open_console();
  n_.machine.emplace(mc, n_.world);
  n_.boot.load_into(*n_.machine);
  spdlog::info("booted {} ({} MiB) as primary, epoch {}", n_.boot.identity_image(), n_.cfg.mem_mib, n_.epoch_now());
}

NextRole PrimaryRole::run() {
  for (;;) {
    {
      std::unique_lock lock(n_.mutex);
      if (n_.stopping) return NextRole::Stop;
      if (n_.pair.state() == PairState::Fenced) {
        // The guest stays paused: nothing it computed could be released anyway.
        if (n_.demote_requested) {
          lock.unlock();
          demote_to_standby();
          return NextRole::Secondary;
        }
        n_.pending_link.reset();
        n_.handover_requested = n_.unprotect_requested = false;
        n_.cv.wait_for(lock, std::chrono::milliseconds(100));
        continue;
      }
      if (n_.handover_requested) {
        n_.handover_requested = false;
        lock.unlock();
        if (do_handover()) return NextRole::Secondary;
        continue;
      }
      if (n_.pending_link) {
        std::shared_ptr<Link> l = std::exchange(n_.pending_link, nullptr);
        lock.unlock();
        sender_.run(l);
        continue;
      }
      if (n_.unprotect_requested) {
        n_.unprotect_requested = false;
        std::shared_ptr<Link> l = std::exchange(n_.link, nullptr);
        n_.pair.to(PairState::Standalone, "unprotect");
        n_.acks.disarm();
        lock.unlock();
        if (l) l->close("unprotect");
        n_.gate->set_gated(false);
      }
      if (!n_.link && n_.recorder->recording()) {
        lock.unlock();
        n_.recorder->set_sink(*n_.machine, nullptr);
        n_.log_bytes_before += n_.sink->bytes();
        n_.sink.reset();
      }
    }
    n_.wake = 0;
    const vmm::RunResult r = n_.machine->run_until(n_.machine->icount() + kSlice);
    n_.icount = r.icount;
    if (r.exit == vmm::Exit::GuestPass || r.exit == vmm::Exit::GuestFail || r.exit == vmm::Exit::Reset) {
      n_.recorder->finish(*n_.machine, r);
      spdlog::warn("the guest ended ({}, code {}) at icount {}", vmm::to_string(r.exit), r.code, r.icount);
      std::unique_lock lock(n_.mutex);
      n_.last_error = std::string("guest ended: ") + vmm::to_string(r.exit);
      n_.cv.wait(lock, [this] { return n_.stopping; });
      return NextRole::Stop;
    }
  }
}

// The VM and everything that serves it (log, gate, NIC, console) go; the node keeps listening.
void PrimaryRole::drop_vm() {
  n_.machine.reset();
  n_.recorder.reset();
  n_.sink.reset();
  n_.gate.reset();
  n_.net_port.reset();
  n_.console.reset();
}

// A fenced primary that the live primary refused: drop the VM, become an empty standby.
void PrimaryRole::demote_to_standby() {
  std::shared_ptr<Link> l;
  {
    std::lock_guard lock(n_.mutex);
    l = std::exchange(n_.link, nullptr);
  }
  if (l) l->close("demoted");
  if (n_.recorder && n_.recorder->recording() && n_.machine) n_.recorder->set_sink(*n_.machine, nullptr);
  drop_vm();
  n_.lease->cancel();
  {
    std::lock_guard lock(n_.mutex);
    n_.pair.to(Role::Secondary, PairState::Standby, "demoted: the live primary refused this fenced node");
    n_.demote_requested = false;
    n_.last_error.clear();
    n_.sync = {};
  }
  n_.make_transport();
  spdlog::warn("STANDBY: this node (epoch {}) waits to be re-synced by the live primary", n_.epoch_now());
}

// Called by PrimaryWorld::service on the VM thread.
void PrimaryRole::throttle(vmm::Machine& m) {
  n_.icount = m.icount();
  if (!n_.sink) return;
  n_.log_bytes = n_.sink->bytes() + n_.log_bytes_before;
  std::unique_lock lock(n_.mutex);
  // Flow control: the secondary must not fall more than max_lag behind.
  while (n_.link && !n_.stopping && !n_.handover_requested &&
         m.icount() > n_.peer_executed.load() + n_.max_lag_instructions()) {
    n_.throttled = true;
    n_.cv.wait_for(lock, std::chrono::milliseconds(5));
  }
  n_.throttled = false;
}

// Planned switchover: pause, let every output out, hand the secondary the last icount.
bool PrimaryRole::do_handover() {
  std::shared_ptr<Link> l;
  uint64_t new_epoch;
  {
    std::lock_guard lock(n_.mutex);
    l = n_.link;
    new_epoch = n_.epoch + 1;
    if (!l || n_.pair.state() != PairState::Protected) {
      n_.last_error = "failover: the pair is not PROTECTED";
      return false;
    }
  }
  n_.recorder->flush_output();
  n_.recorder->flush();
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  // Everything printed must be released (acknowledged) before the secondary takes over,
  // and the last release marker must be in the log: then nothing is repeated or lost.
  while (n_.gate->held_bytes() > 0 && Clock::now() < deadline && l->is_open()) {
    n_.recorder->flush();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  n_.recorder->log_output_released(n_.machine->icount(), vmm::OutputChannel::Console, n_.gate->released_bytes());
  if (const uint64_t frames = n_.gate->released_bytes(vmm::OutputChannel::Net); frames > 0)
    n_.recorder->log_output_released(n_.machine->icount(), vmm::OutputChannel::Net, frames);
  n_.recorder->flush();
  if (n_.arbitrated) {
    // Everything is released: give the lease up so the secondary acquires it at once
    // (its epoch comes from the arbiter, not from us). Acks no longer release anything
    // either: the secondary goes live without waiting for them to age.
    n_.acks.disarm();
    n_.lease->release();
    new_epoch = n_.epoch_now();
  }
  wire::Envelope e;
  e.mutable_handover()->set_icount(n_.machine->icount());
  e.mutable_handover()->set_new_epoch(n_.arbitrated ? 0 : new_epoch);
  e.mutable_handover()->set_released_output(n_.gate->released_bytes());
  n_.peer.send(l, std::move(e));
  spdlog::info("handed over at icount {} (epoch {}); this node becomes a standby secondary", n_.machine->icount(),
               new_epoch);
  // Become an empty standby: drop the VM and the console, keep listening.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  l->close("handover complete");
  drop_vm();
  {
    std::lock_guard lock(n_.mutex);
    n_.pair.to(Role::Secondary, PairState::Standby, "planned handover");
    n_.link.reset();
    n_.epoch = new_epoch;
  }
  n_.store_epoch(new_epoch);
  n_.make_transport();
  return true;
}

}  // namespace tandem::replicator
