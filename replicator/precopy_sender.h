#pragma once
// The primary's half of the pre-copy (the initial sync of a secondary), on the VM thread:
// iterative copy rounds while the guest runs, a stop-and-copy, then the log streams on the
// same link. The parts' encoding runs on PartPipeline's thread (precopy.h); the secondary's
// half is PrecopyReceiver.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "replicator/transport/link.h"

namespace tandem::replicator {

struct NodeCore;

class PrecopySender {
 public:
  explicit PrecopySender(NodeCore& node) : n_(node) {}

  // Syncs the secondary on `l` (SYNCING), then streams the log to it; PROTECTED follows
  // when its SyncResult comes. A sync that stops part-way (the link closed, the secondary
  // stopped answering, a disk that cannot be read) leaves the node STANDALONE, the link
  // closed, and the next pre-copy complete again.
  void run(const std::shared_ptr<Link>& l);

 private:
  void abandon_sync(const std::shared_ptr<Link>& l, const std::string& error);
  void check_sync_link(const std::shared_ptr<Link>& l);
  void run_precopy_slice();
  uint64_t sync_bytes() const;
  void wait_for_sync_acks(const std::shared_ptr<Link>& l, uint64_t sequence, uint64_t window, bool guest_runs,
                          const std::atomic<bool>* abandoned = nullptr);

  NodeCore& n_;
};

}  // namespace tandem::replicator
