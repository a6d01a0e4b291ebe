#include "replicator/precopy_receiver.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "checkpoint/checkpoint.h"
#include "replicator/node_core.h"

namespace tandem::replicator {

void PrecopyReceiver::on_chunk(const std::shared_ptr<Link>& l, wire::SyncChunk&& chunk) {
  std::unique_lock lock(n_.mutex);
  if (n_.pair.role() != Role::Secondary) {
    spdlog::warn("ignored a sync message from {}: this node is the primary", l->peer().address);
    return;
  }
  if (auto accepted = n_.sync_sequence.accept(chunk); !accepted) {
    const std::string error = accepted.error().message;
    n_.last_error = "sync refused: " + error;
    spdlog::error("{}", n_.last_error);
    lock.unlock();
    n_.peer.send_sync_result(l, false, 0, error);
    l->close("sync refused");  // outside the lock: close() can run on_link_closed inline
    return;
  }
  const auto now = Clock::now();
  if (chunk.sequence() == 0) n_.sync_started = now;
  n_.sync.rounds = chunk.round() + 1;
  n_.sync.bytes += chunk.checkpoint().size();
  const double seconds = std::chrono::duration<double>(now - n_.sync_started).count();
  n_.sync.rate_mb_s = seconds > 0 ? n_.sync.bytes / seconds / 1e6 : 0;
  n_.sync_chunks.push_back(std::move(chunk));
  n_.cv.notify_all();
}

// Test hook (NodeTestHooks::sync_apply_delay): the last sync chunk is held back.
void PrecopyReceiver::delay_sync_apply_for_tests() const {
  const auto delay = n_.cfg.test.sync_apply_delay;
  if (delay.count() > 0) std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(delay, std::chrono::seconds(10)));
}

// One pre-copy message, already in its place (SyncSequence, on the I/O thread): message
// 0 builds a fresh machine of the size its part names; every part is applied as it
// comes and acknowledged; the closing message carries the core state and must leave the
// machine at the primary's icount and state hash.
void PrecopyReceiver::apply(const wire::SyncChunk& chunk, const std::shared_ptr<Link>& l) {
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
        if (n_.cfg.disk.empty()) throw std::runtime_error("the primary has a disk but [vm] disk is not set here");
        std::filesystem::resize_file(n_.cfg.disk, info.disk_bytes);  // must exist; contents come next
      }
      mc.disk_path = info.disk_bytes > 0 ? n_.cfg.disk : "";
      mc.nic = n_.nic_config();  // [net] mac/mtu must be the primary's: the snapshot refuses others
      n_.replayer.reset();
      n_.stream.reset();
      n_.tail.reset();
      n_.machine.reset();
      n_.world.current = nullptr;
      n_.machine.emplace(mc, n_.world);
    }
    if (!n_.machine) throw std::runtime_error("sync message " + std::to_string(chunk.sequence()) + " without a machine");
    if (chunk.last()) delay_sync_apply_for_tests();
    checkpoint::apply(*n_.machine, chunk.checkpoint());
    if (!chunk.last()) {
      n_.peer.send_sync_ack(l, chunk.sequence(), chunk.checkpoint().size());
      return;
    }
    const uint64_t hash = n_.machine->state_hash();
    if (hash != chunk.state_hash() || n_.machine->icount() != chunk.icount()) {
      throw std::runtime_error(fmt::format("state hash after sync {:016x} differs from the primary's {:016x}",
                                           hash, chunk.state_hash()));
    }
    auto s = std::make_shared<StreamBatchSource>();
    n_.tail = std::make_unique<OutputTail>();
    n_.replayer = std::make_unique<hooks::Replayer>(*s, *n_.tail, true);
    if (const std::string err = hooks::Replayer::check_header(chunk.log_header(), *n_.machine); !err.empty()) {
      throw std::runtime_error(err);
    }
    n_.world.current = n_.replayer.get();
    n_.icount = n_.machine->icount();
    bool had_early_batches;
    {
      std::lock_guard lock(n_.mutex);
      had_early_batches = !n_.early_batches.empty();
      for (log::LogBatch& batch : n_.early_batches) s->push(std::move(batch));
      n_.early_batches.clear();
      if (s->gap().empty()) {
        n_.stream = s;
        n_.pair.to(PairState::Protected, "synced");
        n_.sync.done = true;
      }
    }
    if (const std::string gap = s->gap(); !gap.empty()) throw std::runtime_error(gap);
    n_.peer.send_sync_result(l, true, hash, "");
    if (had_early_batches) {
      // Batches that came early were not acknowledged on arrival: the primary's output
      // waits for this (the replay may idle at the frontier before its next ack).
      n_.peer.send_ack(l, *s, n_.machine->icount());
    }
    spdlog::info("synced at icount {} (state hash {:016x}): PROTECTED", n_.machine->icount(), hash);
  } catch (const std::exception& e) {
    spdlog::error("sync failed: {}", e.what());
    n_.peer.send_sync_result(l, false, 0, e.what());
    n_.machine.reset();
    std::lock_guard lock(n_.mutex);
    n_.sync_chunks.clear();  // the rest of this sync has nothing to apply to
    n_.early_batches.clear();
    n_.last_error = std::string("sync failed: ") + e.what();
    n_.pair.to(PairState::Standby, "sync failed");
    if (l) l->close("sync failed");
  }
}

}  // namespace tandem::replicator
