#include "replicator/precopy_sender.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "checkpoint/checkpoint.h"
#include "replicator/node_core.h"
#include "replicator/precopy.h"

namespace tandem::replicator {

namespace {

constexpr uint32_t kMaxPrecopyRounds = 4;
constexpr uint64_t kPrecopyDoneBytes = 256 << 10;  // a round this small ends the pre-copy
// While a pre-copy waits for the secondary, the guest runs in slices this long.
constexpr uint64_t kPrecopySlice = 250'000;

// The link closed during a pre-copy: the rounds stop where they are.
struct SyncAborted {};

}  // namespace

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
void PrecopySender::run(const std::shared_ptr<Link>& l) {
  n_.acks.reset();  // a new link: nothing acknowledged on an earlier one counts
  {
    std::lock_guard lock(n_.mutex);
    n_.pair.to(PairState::Syncing, "pre-copy to a new secondary");
    n_.sync = {};
    n_.link = l;
    n_.peer_address = l->peer().address;
    n_.sync_started = Clock::now();
  }
  n_.sync_acked = 0;
  const auto start = Clock::now();
  const uint64_t icount_before = n_.machine->icount();
  // Written by whichever thread sends (the pipeline's during a round, this one for the
  // closing message); the pipeline's hand-offs order the two.
  uint64_t sequence = 0;
  uint32_t round = 0, part = 0;
  std::atomic<bool> abandoned{false};  // the VM thread gave up: a sender waiting for acks stops
  auto send_part = [&](std::string&& bytes, wire::SyncChunk chunk = {}) {
    wait_for_sync_acks(l, sequence, kSyncWindowParts, /*guest_runs=*/false, &abandoned);
    const uint64_t n = bytes.size();
    chunk.set_round(round);
    chunk.set_part(part++);
    chunk.set_sequence(sequence++);
    chunk.set_checkpoint(std::move(bytes));
    wire::Envelope e;
    *e.mutable_sync_chunk() = std::move(chunk);
    n_.peer.send(l, std::move(e));
    std::lock_guard lock(n_.mutex);
    n_.sync.rounds = round + 1;
    n_.sync.bytes += n;
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    n_.sync.rate_mb_s = s > 0 ? n_.sync.bytes / s / 1e6 : 0;
  };
  auto log_round = [&](const checkpoint::Stats& s, uint64_t sent_before) {
    std::lock_guard lock(n_.mutex);
    spdlog::info("pre-copy round {}: {} parts, {} pages, {} bytes; {} bytes in {:.2f} s so far ({:.1f} MB/s)", round,
                 part, s.pages, n_.sync.bytes - sent_before, n_.sync.bytes,
                 std::chrono::duration<double>(Clock::now() - start).count(), n_.sync.rate_mb_s);
  };
  PartPipeline pipeline(kSyncPartBytes, kSyncCopyBatches, kSyncCopyBatchBytes,
                        [&](std::string&& bytes) { send_part(std::move(bytes)); });
  // Declared after the pipeline, so it is set before the pipeline joins its thread.
  struct Abandon {
    std::atomic<bool>& flag;
    ~Abandon() { flag = true; }
  } abandon_on_exit{abandoned};
  // One round through the pipeline. While no batch is free (or the round's last parts
  // are on their way) the guest runs in slices, unless this is the stop-and-copy.
  auto copy_round = [&](checkpoint::Kind kind, bool guest_runs) {
    checkpoint::RoundCopier copier(*n_.machine, kind);
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
  n_.recorder->flush_output();  // output from before protection is not the secondary's
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
    n_.recorder->flush_output();
    part = 0;
    ++round;
    sent_before = sync_bytes();
    stats = copy_round(checkpoint::Kind::Incremental, false);
    wire::SyncChunk last;
    last.set_last(true);
    last.set_icount(n_.machine->icount());
    last.set_state_hash(n_.machine->state_hash());
    *last.mutable_log_header() = n_.recorder->make_header(*n_.machine, n_.boot.identity_image());
    send_part(checkpoint::write_incremental(*n_.machine), std::move(last));  // nothing dirty: the core state
    log_round(stats, sent_before);
  } catch (const SyncAborted&) {
    abandon_sync(l, "");
    return;
  } catch (const std::exception& e) {  // e.g. the disk image cannot be read
    abandon_sync(l, e.what());
    return;
  }
  n_.gate->reset_counts();
  n_.gate->set_gated(true);
  n_.sink = std::make_unique<LinkBatchSink>(l, [this](uint64_t sequence) { n_.acks.batch_sent(sequence); });
  n_.recorder->set_sink(*n_.machine, n_.sink.get());
  n_.recorder->restart_release_markers();
  std::lock_guard lock(n_.mutex);
  n_.sync.done = true;
  spdlog::info("pre-copy sent: {} rounds, {} messages, {} bytes in {:.3f} s ({:.1f} MB/s); the guest ran {} "
               "instructions meanwhile; streaming the log",
               n_.sync.rounds, sequence, n_.sync.bytes, std::chrono::duration<double>(Clock::now() - start).count(),
               n_.sync.rate_mb_s, n_.machine->icount() - icount_before);
}

// A pre-copy that stopped part-way: the rounds it took are lost (the next incremental is
// complete), and the link is dropped when this node still holds it.
void PrecopySender::abandon_sync(const std::shared_ptr<Link>& l, const std::string& error) {
  checkpoint::mark_all_changed(*n_.machine);
  if (error.empty()) {
    spdlog::warn("pre-copy stopped after {} bytes: the link to {} closed", sync_bytes(), l->peer().address);
  } else {
    spdlog::error("pre-copy failed after {} bytes: {}", sync_bytes(), error);
    l->close("pre-copy failed");
  }
  std::lock_guard lock(n_.mutex);
  if (!error.empty()) n_.last_error = "pre-copy failed: " + error;
  if (n_.link == l) {  // it closed before this pre-copy took it: on_link_closed did not see it
    n_.link.reset();
    if (n_.pair.state() == PairState::Syncing) n_.pair.to(PairState::Standalone, "the pre-copy stopped");
  }
}

// Throws SyncAborted when the node stops or the sync's link is gone.
void PrecopySender::check_sync_link(const std::shared_ptr<Link>& l) {
  std::lock_guard lock(n_.mutex);
  if (n_.stopping || n_.link != l || !l->is_open()) throw SyncAborted{};
}

// One slice of the guest during a pre-copy (unrecorded: the secondary gets what it writes
// in the next round). A guest that cannot run on waits a little instead of spinning.
void PrecopySender::run_precopy_slice() {
  n_.wake = 1;  // an idle guest ends the slice at once: there is nothing to wait for
  const vmm::RunResult r = n_.machine->run_until(n_.machine->icount() + kPrecopySlice);
  n_.icount = r.icount;
  if (r.exit != vmm::Exit::Running) {
    std::unique_lock lock(n_.mutex);
    n_.cv.wait_for(lock, std::chrono::milliseconds(1));
  }
}

uint64_t PrecopySender::sync_bytes() const {
  std::lock_guard lock(n_.mutex);
  return n_.sync.bytes;
}

// Flow control of the pre-copy: returns when fewer than `window` of the messages sent
// before `sequence` await the secondary's SyncAck. Meanwhile the guest runs in short
// slices when `guest_runs` (only the VM thread may ask for that). Throws SyncAborted when
// the link closes, the secondary stops answering, or `abandoned` is set.
void PrecopySender::wait_for_sync_acks(const std::shared_ptr<Link>& l, uint64_t sequence, uint64_t window, bool guest_runs,
                        const std::atomic<bool>* abandoned) {
  const auto patience = std::chrono::seconds(30);
  auto deadline = Clock::now() + patience;
  uint64_t acked = n_.sync_acked.load();
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
      std::unique_lock lock(n_.mutex);
      n_.cv.wait_for(lock, std::chrono::milliseconds(1));
    }
    if (const uint64_t now_acked = n_.sync_acked.load(); now_acked != acked) {
      acked = now_acked;
      deadline = Clock::now() + patience;
    }
  }
}

}  // namespace tandem::replicator
