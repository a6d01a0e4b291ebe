// The live pair. One Node per tandemd: a primary runs the guest with a Recorder whose
// batches stream to the secondary and whose console output waits behind the output rule;
// a secondary rebuilds the machine from the primary's pre-copy checkpoints, replays the
// stream a little behind it, and goes live when the primary is lost or hands over.
//
// Threads: the VM thread owns the machine and its Worlds; the transport's I/O thread runs
// link callbacks; a monitor thread sends heartbeats and watches the peer. Shared state is
// under `mutex`; the machine is touched only by the VM thread.
#include "replicator/node.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "checkpoint/checkpoint.h"
#include "fencing/decider.h"
#include "replicator/pair_io.h"
#include "replicator/transport/link.h"
#include "vmm-hooks/recorder.h"
#include "vmm-hooks/replayer.h"
#include "vmm-hooks/tcp_console.h"
#include "vmm/machine.h"

namespace tandem::replicator {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kSlice = 2'000'000;          // instructions between command checks
constexpr uint64_t kAuditInterval = 10'000'000;  // state-hash audits in the stream
constexpr uint32_t kMaxPrecopyRounds = 4;
constexpr uint64_t kPrecopyDoneBytes = 256 << 10;  // a round this small ends the pre-copy

std::pair<std::string, uint16_t> split_address(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) throw std::invalid_argument("address '" + address + "' is not HOST:PORT");
  return {address.substr(0, colon), static_cast<uint16_t>(std::stoul(address.substr(colon + 1)))};
}

// Forwards to whichever World the machine is under now: a secondary's machine is built
// under a Replayer and lives on under a Recorder after promotion.
class SwitchWorld final : public vmm::World {
 public:
  vmm::World* current = nullptr;
  uint64_t next_service_icount(uint64_t now) override { return current->next_service_icount(now); }
  void service(vmm::Machine& m) override { current->service(m); }
  bool idle(vmm::Machine& m, uint64_t deadline) override { return current->idle(m, deadline); }
  void console_output(uint64_t icount, uint8_t byte) override { current->console_output(icount, byte); }
  void entropy(uint64_t icount, std::span<uint8_t> out) override { current->entropy(icount, out); }
};

}  // namespace

// The primary's World: a Recorder whose output goes through the gate and that logs how
// far output has been released.
class PrimaryWorld final : public hooks::Recorder {
 public:
  PrimaryWorld(Node::Impl& node, GatedConsole& gate, hooks::RecorderOptions options)
      : Recorder(gate, options), node_(node), gate_(gate) {}
  void console_output(uint64_t icount, uint8_t byte) override {
    gate_.set_output_icount(icount);
    Recorder::console_output(icount, byte);
  }
  void service(vmm::Machine& m) override;
  bool idle(vmm::Machine& m, uint64_t deadline) override;

 private:
  void log_release_marker(vmm::Machine& m) {
    const uint64_t released = gate_.released_bytes();
    if (recording() && released != logged_released_) {
      log_record(m.icount(), log::OUTPUT_RELEASED, released);
      logged_released_ = released;
    }
  }
  Node::Impl& node_;
  GatedConsole& gate_;
  uint64_t logged_released_ = 0;
  friend struct Node::Impl;
};

struct Node::Impl {
  NodeConfig cfg;
  fencing::HeartbeatDecider decider;

  mutable std::mutex mutex;
  std::condition_variable cv;
  Role role;
  PairState state;
  uint64_t epoch = 1;
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
  std::deque<wire::SyncChunk> sync_chunks;    // secondary: pre-copy rounds to apply
  volatile std::sig_atomic_t wake = 0;        // makes an idle primary return to its loop

  std::atomic<uint64_t> icount{0};
  std::atomic<uint64_t> peer_executed{0};
  std::atomic<uint64_t> peer_received{0};
  std::atomic<uint64_t> last_audit_icount{0};
  std::atomic<bool> last_audit_ok{true};
  std::atomic<uint64_t> log_bytes{0};
  uint64_t log_bytes_before = 0;  // sent over earlier links
  std::atomic<int64_t> last_heard_ns{0};
  Clock::time_point rate_mark = Clock::now();
  uint64_t rate_mark_bytes = 0;
  double log_rate_kb_s = 0;

  std::unique_ptr<Transport> transport;
  std::thread vm_thread;
  std::thread monitor_thread;

  // VM-thread state.
  SwitchWorld world;
  std::optional<vmm::Machine> machine;
  std::unique_ptr<hooks::TcpConsole> console;
  std::unique_ptr<GatedConsole> gate;
  std::unique_ptr<PrimaryWorld> recorder;
  std::unique_ptr<LinkBatchSink> sink;
  std::shared_ptr<StreamBatchSource> stream;
  std::unique_ptr<OutputTail> tail;
  std::unique_ptr<hooks::Replayer> replayer;

  explicit Impl(NodeConfig c) : cfg(std::move(c)), role(cfg.role) {
    state = role == Role::Primary ? PairState::Standalone : PairState::Standby;
  }

  uint64_t max_lag_instructions() const { return uint64_t{cfg.max_lag_ms} * 1'000'000; }

  // ---- epoch persistence ----------------------------------------------------------
  std::string epoch_path() const { return cfg.state_dir.empty() ? "" : cfg.state_dir + "/epoch"; }
  void load_epoch() {
    const std::string path = epoch_path();
    if (path.empty()) return;
    std::ifstream in(path);
    uint64_t e = 0;
    if (in >> e && e > 0) epoch = e;
  }
  void store_epoch(uint64_t e) {
    const std::string path = epoch_path();
    if (path.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(cfg.state_dir, ec);
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << e << "\n";
    }
    std::filesystem::rename(tmp, path, ec);
  }

  // ---- transport --------------------------------------------------------------------
  void make_transport() {
    LinkIdentity me;
    me.vm_id = cfg.vm_id;
    me.node_name = cfg.node_name;
    me.psk = cfg.psk;
    me.epoch = epoch;
    me.role = role == Role::Primary ? wire::PRIMARY : wire::SECONDARY;
    if (transport) transport->stop();
    transport = make_tcp_transport(me);
    if (!cfg.listen.empty()) {
      const auto [host, port] = split_address(cfg.listen);
      transport->listen(host, port, [this](std::shared_ptr<Link> l) { on_incoming(std::move(l)); });
    }
  }

  void send(const std::shared_ptr<Link>& l, wire::Envelope e) {
    if (!l) return;
    e.set_epoch(epoch_now());
    l->send(std::move(e));
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
  }

  // A primary connects to us (we are an empty secondary).
  void on_incoming(std::shared_ptr<Link> l) {
    std::unique_lock lock(mutex);
    if (role != Role::Secondary || state != PairState::Standby || link) {
      lock.unlock();
      spdlog::warn("refusing a pair link from {}: this node is {} {}", l->peer().address, to_string(role),
                   to_string(state));
      l->close("busy: not a standby secondary");
      return;
    }
    if (l->peer().epoch < epoch) {
      lock.unlock();
      spdlog::warn("refusing primary {} at epoch {}: this node has seen epoch {}", l->peer().address,
                   l->peer().epoch, epoch);
      l->close("stale epoch");
      return;
    }
    epoch = l->peer().epoch;
    link = l;
    peer_address = l->peer().address;
    state = PairState::Syncing;
    sync = {};
    lock.unlock();
    store_epoch(l->peer().epoch);
    spdlog::info("primary {} ({}) connected at epoch {}: syncing", l->peer().node_name, l->peer().address,
                 l->peer().epoch);
    attach(l);
    l->start();
    cv.notify_all();
  }

  void on_message(const std::shared_ptr<Link>& l, wire::Envelope&& e) {
    last_heard_ns = Clock::now().time_since_epoch().count();
    switch (e.body_case()) {
      case wire::Envelope::kBatch: {
        std::shared_ptr<StreamBatchSource> s;
        {
          std::lock_guard lock(mutex);
          s = stream;
        }
        if (!s) return;  // not synced yet: a batch can only follow the last sync chunk
        s->push(std::move(*e.mutable_batch()));
        wire::Envelope ack;
        ack.mutable_ack()->set_received_icount(s->complete_to());
        ack.mutable_ack()->set_executed_icount(icount.load());
        ack.mutable_ack()->set_batch_sequence(s->last_sequence());
        send(l, std::move(ack));
        return;
      }
      case wire::Envelope::kAck: {
        peer_received = e.ack().received_icount();
        peer_executed = e.ack().executed_icount();
        if (gate) gate->acknowledge(e.ack().received_icount());
        cv.notify_all();
        return;
      }
      case wire::Envelope::kSyncChunk: {
        std::lock_guard lock(mutex);
        sync.rounds = e.sync_chunk().round() + 1;
        sync.bytes += e.sync_chunk().checkpoint().size();
        sync_chunks.push_back(std::move(*e.mutable_sync_chunk()));
        cv.notify_all();
        return;
      }
      case wire::Envelope::kSyncResult: {
        std::unique_lock lock(mutex);
        if (e.sync_result().ok()) {
          state = PairState::Protected;
          sync.done = true;
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
        if (role == Role::Primary) peer_executed = std::max(peer_executed.load(), e.heartbeat().icount());
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
        if (role == Role::Secondary && state == PairState::Protected) {
          promotion = fencing::Verdict{true, e.handover().new_epoch(), "planned handover"};
          handover_released = e.handover().released_output();
          if (stream) stream->close();  // the handover follows the last batch on the link
          spdlog::info("handover at icount {}: going live with epoch {}", e.handover().icount(),
                       e.handover().new_epoch());
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
    if (role == Role::Primary) {
      // No secondary to wait for: output flows again (the VM thread stops recording).
      if (state != PairState::Standalone) spdlog::warn("secondary lost ({}): STANDALONE", reason);
      state = PairState::Standalone;
      if (gate) gate->set_gated(false);
      wake = 1;
    } else if (state == PairState::Protected && !promotion) {
      const fencing::Verdict v = decider.decide({reason, epoch});
      spdlog::warn("primary lost ({}): {}", reason, v.why);
      if (v.promote) {
        promotion = v;
        // No more log will come: the replay runs out what it has (also from inside an
        // idle wait at the frontier), then the VM thread goes live.
        if (stream) stream->close();
      }
    } else if (state == PairState::Syncing) {
      spdlog::warn("primary lost during sync ({}): back to STANDBY", reason);
      state = PairState::Standby;
    }
    cv.notify_all();
  }

  // ---- monitor: heartbeats both ways ----------------------------------------------------
  void monitor_loop() {
    const auto interval = std::chrono::milliseconds(cfg.heartbeat_ms);
    const int64_t limit_ns = int64_t{cfg.heartbeat_ms} * cfg.heartbeat_misses * 1'000'000;
    std::unique_lock lock(mutex);
    while (!stopping) {
      cv.wait_for(lock, interval);
      if (stopping) break;
      std::shared_ptr<Link> l = link;
      // Log rate for status.
      const auto now = Clock::now();
      const double dt = std::chrono::duration<double>(now - rate_mark).count();
      if (dt >= 1.0) {
        log_rate_kb_s = (log_bytes.load() - rate_mark_bytes) / dt / 1024.0;
        rate_mark = now;
        rate_mark_bytes = log_bytes.load();
      }
      lock.unlock();
      if (l) {
        wire::Envelope hb;
        hb.mutable_heartbeat()->set_sent_ns(now.time_since_epoch().count());
        hb.mutable_heartbeat()->set_icount(icount.load());
        send(l, std::move(hb));
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
      if (role == Role::Primary) {
        boot_primary();
        primary_loop();
      } else {
        secondary_loop();
      }
    } catch (const std::exception& e) {
      std::lock_guard lock(mutex);
      last_error = e.what();
      state = PairState::Failed;
      spdlog::critical("VM thread stopped: {}", e.what());
    }
  }

  void open_console() {
    if (cfg.console_listen.empty()) {
      console = std::make_unique<hooks::TcpConsole>("127.0.0.1", 0);
    } else {
      const auto [host, port] = split_address(cfg.console_listen);
      console = std::make_unique<hooks::TcpConsole>(host, port);
    }
    gate = std::make_unique<GatedConsole>(*console);
    hooks::RecorderOptions options;
    options.audit_interval = kAuditInterval;
    options.time = hooks::GuestTime::Wall;
    options.poll_interval = 1 << 18;
    options.interrupt_flag = &wake;
    recorder = std::make_unique<PrimaryWorld>(*this, *gate, options);
    world.current = recorder.get();
    spdlog::info("console listening on {}:{}", cfg.console_listen.empty() ? "127.0.0.1" : split_address(cfg.console_listen).first,
                 console->port());
  }

  void boot_primary() {
    vmm::MachineConfig mc;
    mc.mem_bytes = cfg.mem_mib << 20;
    mc.disk_path = cfg.disk;
    open_console();
    machine.emplace(mc, world);
    machine->load(cfg.guest);
    spdlog::info("booted {} ({} MiB) as primary, epoch {}", cfg.guest, cfg.mem_mib, epoch_now());
  }

  void primary_loop() {
    for (;;) {
      {
        std::unique_lock lock(mutex);
        if (stopping) return;
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
          state = PairState::Standalone;
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

  // Iterative pre-copy to a new secondary, then streaming.
  void precopy(const std::shared_ptr<Link>& l) {
    {
      std::lock_guard lock(mutex);
      state = PairState::Syncing;
      sync = {};
      link = l;
      peer_address = l->peer().address;
    }
    const auto start = Clock::now();
    auto send_chunk = [&](wire::SyncChunk chunk) {
      const uint64_t n = chunk.checkpoint().size();
      wire::Envelope e;
      *e.mutable_sync_chunk() = std::move(chunk);
      send(l, std::move(e));
      std::lock_guard lock(mutex);
      sync.rounds += 1;
      sync.bytes += n;
      const double s = std::chrono::duration<double>(Clock::now() - start).count();
      sync.rate_mb_s = s > 0 ? sync.bytes / s / 1e6 : 0;
    };
    recorder->flush_output();  // output from before protection is not the secondary's
    {
      wire::SyncChunk c;
      c.set_round(0);
      c.set_checkpoint(checkpoint::write_full(*machine));
      send_chunk(std::move(c));
    }
    checkpoint::Options incremental;
    incremental.include_core = false;
    for (uint32_t round = 1; round < kMaxPrecopyRounds; ++round) {
      // Let the guest run (unrecorded) while the last round travels; then copy what it dirtied.
      wait_for_link_drain(l);
      wake = 1;  // an idle guest ends the slice at once: there is nothing to wait for
      machine->run_until(machine->icount() + kSlice);
      wire::SyncChunk c;
      c.set_round(round);
      c.set_checkpoint(checkpoint::write_incremental(*machine, incremental));
      const bool small = c.checkpoint().size() < kPrecopyDoneBytes;
      send_chunk(std::move(c));
      if (small) break;
    }
    // Stop-and-copy: the machine is paused here (this thread owns it).
    recorder->flush_output();
    wire::SyncChunk last;
    last.set_round(sync.rounds);
    last.set_last(true);
    last.set_checkpoint(checkpoint::write_incremental(*machine));  // with the core state
    last.set_icount(machine->icount());
    last.set_state_hash(machine->state_hash());
    *last.mutable_log_header() = recorder->make_header(*machine, cfg.guest);
    send_chunk(std::move(last));
    gate->reset_count();
    gate->set_gated(true);
    sink = std::make_unique<LinkBatchSink>(l);
    recorder->set_sink(*machine, sink.get());
    recorder->logged_released_ = 0;
    {
      std::lock_guard lock(mutex);
      sync.done = true;
    }
    spdlog::info("pre-copy sent: {} rounds, {} bytes in {:.3f} s; streaming the log", sync.rounds, sync.bytes,
                 std::chrono::duration<double>(Clock::now() - start).count());
  }

  void wait_for_link_drain(const std::shared_ptr<Link>& l) {
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (l->is_open() && l->queued_bytes() > (4u << 20) && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
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
      cv.wait_for(lock, std::chrono::milliseconds(5));
    }
  }

  // Planned switchover: pause, let every output out, hand the secondary the last icount.
  bool do_handover() {
    std::shared_ptr<Link> l;
    uint64_t new_epoch;
    {
      std::lock_guard lock(mutex);
      l = link;
      new_epoch = epoch + 1;
      if (!l || state != PairState::Protected) {
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
    recorder->log_record(machine->icount(), log::OUTPUT_RELEASED, gate->released_bytes());
    recorder->flush();
    wire::Envelope e;
    e.mutable_handover()->set_icount(machine->icount());
    e.mutable_handover()->set_new_epoch(new_epoch);
    e.mutable_handover()->set_released_output(gate->released_bytes());
    send(l, std::move(e));
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
      role = Role::Secondary;
      state = PairState::Standby;
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

  void apply_sync_chunk(const wire::SyncChunk& chunk, const std::shared_ptr<Link>& l) {
    try {
      if (chunk.round() == 0) {
        const checkpoint::StreamInfo info = checkpoint::inspect(chunk.checkpoint());
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
      if (!machine) throw std::runtime_error("sync chunk before the full checkpoint");
      checkpoint::apply(*machine, chunk.checkpoint());
      if (!chunk.last()) return;
      const uint64_t hash = machine->state_hash();
      if (hash != chunk.state_hash() || machine->icount() != chunk.icount()) {
        throw std::runtime_error(fmt::format("state hash after sync {:016x} differs from the primary's {:016x}",
                                             hash, chunk.state_hash()));
      }
      auto s = std::make_shared<StreamBatchSource>();
      tail = std::make_unique<OutputTail>();
      replayer = std::make_unique<hooks::Replayer>(*s, tail.get(), true);
      if (const std::string err = hooks::Replayer::check_header(chunk.log_header(), *machine); !err.empty()) {
        throw std::runtime_error(err);
      }
      world.current = replayer.get();
      icount = machine->icount();
      {
        std::lock_guard lock(mutex);
        stream = s;
        state = PairState::Protected;
        sync.done = true;
      }
      wire::Envelope ok;
      ok.mutable_sync_result()->set_ok(true);
      ok.mutable_sync_result()->set_state_hash(hash);
      send(l, std::move(ok));
      spdlog::info("synced at icount {} (state hash {:016x}): PROTECTED", machine->icount(), hash);
    } catch (const std::exception& e) {
      spdlog::error("sync failed: {}", e.what());
      wire::Envelope fail;
      fail.mutable_sync_result()->set_ok(false);
      fail.mutable_sync_result()->set_error(e.what());
      send(l, std::move(fail));
      machine.reset();
      std::lock_guard lock(mutex);
      last_error = std::string("sync failed: ") + e.what();
      state = PairState::Standby;
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
    auto last_ack = Clock::now();
    uint64_t audits_seen = 0;
    for (;;) {
      bool promote;
      {
        std::lock_guard lock(mutex);
        if (stopping) return false;
        promote = promotion.has_value();
      }
      if (promote) s->close();
      const uint64_t target = s->complete_to();
      if (machine->icount() < target) {
        const vmm::RunResult r = machine->run_until(target);
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
      tail->trim_released(replayer->released_output());
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
        wire::Envelope ack;
        ack.mutable_ack()->set_received_icount(s->complete_to());
        ack.mutable_ack()->set_executed_icount(machine->icount());
        ack.mutable_ack()->set_batch_sequence(s->last_sequence());
        send(l, std::move(ack));
      }
    }
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
      state = PairState::Standby;
      stream.reset();
    }
    wire::Envelope e;
    e.mutable_divergence()->set_icount(d.icount);
    e.mutable_divergence()->set_what(d.what);
    e.mutable_divergence()->set_expected(d.expected);
    e.mutable_divergence()->set_actual(d.actual);
    send(l, std::move(e));
    if (l) l->close("divergence");
    machine.reset();
  }

  // The replica becomes the primary: same machine, now under a Recorder, with the output
  // it cannot confirm as released emitted again (at-least-once).
  void go_live() {
    fencing::Verdict v;
    uint64_t released_before;
    {
      std::lock_guard lock(mutex);
      v = *promotion;
      promotion.reset();
      released_before = std::exchange(handover_released, 0);
    }
    const auto start = Clock::now();
    replayer->flush_output();
    const std::string unconfirmed = tail->unconfirmed(std::max(replayer->released_output(), released_before));
    open_console();
    if (!unconfirmed.empty()) {
      console->write_output({reinterpret_cast<const uint8_t*>(unconfirmed.data()), unconfirmed.size()});
    }
    {
      std::lock_guard lock(mutex);
      role = Role::Primary;
      state = PairState::Standalone;
      epoch = v.new_epoch;
      link.reset();
      stream.reset();
    }
    store_epoch(v.new_epoch);
    make_transport();
    spdlog::warn("LIVE as primary at icount {} with epoch {} ({}); re-emitted {} unconfirmed output bytes; took {:.1f} ms",
                 machine->icount(), v.new_epoch, v.why, unconfirmed.size(),
                 std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    replayer.reset();
    tail.reset();
  }
};

void PrimaryWorld::service(vmm::Machine& m) {
  // The marker goes first: Recorder::service may flush with complete_to = this icount, and
  // the replica serves an icount once when it gets there, so a record logged here after
  // that flush would be skipped (a spurious "missed OUTPUT_RELEASED" divergence).
  log_release_marker(m);
  Recorder::service(m);
  node_.throttle(m);
}

bool PrimaryWorld::idle(vmm::Machine& m, uint64_t deadline) {
  log_release_marker(m);
  node_.icount = m.icount();
  if (node_.sink) node_.log_bytes = node_.sink->bytes() + node_.log_bytes_before;
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
  if (impl_->transport) impl_->transport->stop();
}

void Node::start() {
  Impl& n = *impl_;
  n.load_epoch();
  if (n.cfg.role == Role::Primary && n.cfg.guest.empty()) throw std::runtime_error("a primary needs [vm] guest");
  n.make_transport();
  n.vm_thread = std::thread([&n] { n.vm_main(); });
  n.monitor_thread = std::thread([&n] { n.monitor_loop(); });
  if (n.cfg.role == Role::Primary && !n.cfg.peer.empty()) {
    if (const std::string err = protect(n.cfg.peer); !err.empty()) spdlog::warn("protect {}: {}", n.cfg.peer, err);
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
  s.role = n.role;
  s.state = n.state;
  s.epoch = n.epoch;
  s.icount = n.icount.load();
  s.peer_icount = n.peer_executed.load();
  if (n.role == Role::Primary && n.link) {
    s.lag_instructions = s.icount > s.peer_icount ? s.icount - s.peer_icount : 0;
    s.lag_ms = s.lag_instructions / 1e6;
  }
  s.log_rate_kb_s = n.log_rate_kb_s;
  s.log_bytes = n.log_bytes.load();
  s.last_audit_icount = n.last_audit_icount.load();
  s.last_audit_ok = n.last_audit_ok.load();
  s.sync = n.sync;
  s.peer = n.link ? n.peer_address : n.cfg.peer;
  s.console = n.console ? fmt::format("127.0.0.1:{}", n.console->port()) : n.cfg.console_listen;
  s.last_error = n.last_error;
  return s;
}

std::string Node::protect(const std::string& peer) {
  Impl& n = *impl_;
  {
    std::lock_guard lock(n.mutex);
    if (n.role != Role::Primary) return "only a primary can protect";
    if (n.link || n.pending_link) return "already protected or syncing with " + n.peer_address;
  }
  std::pair<std::string, uint16_t> hp;
  try {
    hp = split_address(peer);
  } catch (const std::exception& e) {
    return e.what();
  }
  n.transport->connect(hp.first, hp.second, [&n, peer](std::shared_ptr<Link> l, std::string error) {
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
  return "";
}

std::string Node::unprotect() {
  Impl& n = *impl_;
  std::lock_guard lock(n.mutex);
  if (n.role != Role::Primary) return "only a primary can unprotect";
  n.unprotect_requested = true;
  n.wake = 1;
  n.cv.notify_all();
  return "";
}

std::string Node::failover() {
  Impl& n = *impl_;
  std::lock_guard lock(n.mutex);
  if (n.role != Role::Primary || n.state != PairState::Protected) return "failover needs a PROTECTED primary";
  n.handover_requested = true;
  n.wake = 1;
  n.cv.notify_all();
  return "";
}

const char* to_string(Role role) { return role == Role::Primary ? "primary" : "secondary"; }

const char* to_string(PairState state) {
  switch (state) {
    case PairState::Standalone:
      return "STANDALONE";
    case PairState::Syncing:
      return "SYNCING";
    case PairState::Protected:
      return "PROTECTED";
    case PairState::Standby:
      return "STANDBY";
    case PairState::Failed:
      return "FAILED";
  }
  return "UNKNOWN";
}

}  // namespace tandem::replicator
