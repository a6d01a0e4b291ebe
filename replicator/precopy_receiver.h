#pragma once
// The secondary's half of the pre-copy: each SyncChunk is checked for its place in the sync
// on the I/O thread (SyncSequence) and queued; the VM thread applies the queue in order,
// acknowledges every part (SyncAck: the primary's window), and checks the closing message
// against the primary's icount and state hash before the replica is PROTECTED and its
// replay may start. The primary's half is PrecopySender.
#include <memory>

#include "proto/replication.pb.h"
#include "replicator/transport/link.h"

namespace tandem::replicator {

struct NodeCore;

class PrecopyReceiver {
 public:
  explicit PrecopyReceiver(NodeCore& node) : n_(node) {}

  // I/O thread: a sync message from the primary on `l`. Queued for apply() when it is the
  // next one; otherwise the sync is refused (SyncResult not ok) and `l` closed. Ignored on
  // a primary.
  void on_chunk(const std::shared_ptr<Link>& l, wire::SyncChunk&& chunk);

  // VM thread: applies one queued message (message 0 builds a fresh machine of the size it
  // names). On the closing message: the replica is verified, its replay stream set up with
  // the batches that came early, and the node PROTECTED. A failure tells the primary, drops
  // the machine and the rest of the sync, and leaves the node STANDBY with `l` closed.
  void apply(const wire::SyncChunk& chunk, const std::shared_ptr<Link>& l);

 private:
  void delay_sync_apply_for_tests() const;

  NodeCore& n_;
};

}  // namespace tandem::replicator
