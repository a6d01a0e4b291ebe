#pragma once
// The protocol with the other node of the pair, as this node speaks it: every message it
// sends, stamped with this node's epoch (the peer refuses an older one). Acknowledgements
// of the log are built and sent here only: on receipt of a batch (the primary's output
// waits for it), after a sync that queued early batches, and from the replay (executed
// icount, flow control).
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "replicator/pair_io.h"
#include "replicator/transport/link.h"

namespace tandem::replicator {

class PeerSession {
 public:
  // `epoch` is read for every message (it changes with promotions and arbiter grants);
  // `promotion_holdoff`: the promise every Ack carries (not live sooner than this after the
  // last message from the primary).
  PeerSession(std::function<uint64_t()> epoch, std::chrono::milliseconds promotion_holdoff)
      : epoch_(std::move(epoch)), promotion_holdoff_(promotion_holdoff) {}

  // Sends `e` on `l` stamped with the current epoch; a null link sends nothing.
  void send(const std::shared_ptr<Link>& l, wire::Envelope e) const;
  // The secondary has the log up to s.complete_to() and executed it up to `executed`.
  void send_ack(const std::shared_ptr<Link>& l, const StreamBatchSource& s, uint64_t executed) const;
  // Tells the peer why it is refused (a Refused message ends the link on its side with that
  // reason) and closes the link.
  void refuse(const std::shared_ptr<Link>& l, const std::string& reason) const;
  void send_heartbeat(const std::shared_ptr<Link>& l, uint64_t sent_ns, uint64_t icount, uint64_t echo_ns) const;
  void send_divergence(const std::shared_ptr<Link>& l, uint64_t icount, const std::string& what,
                       uint64_t expected = 0, uint64_t actual = 0) const;
  void send_sync_ack(const std::shared_ptr<Link>& l, uint64_t sequence, uint64_t bytes_applied) const;
  void send_sync_result(const std::shared_ptr<Link>& l, bool ok, uint64_t state_hash, const std::string& error) const;

  std::chrono::milliseconds promotion_holdoff() const { return promotion_holdoff_; }

 private:
  std::function<uint64_t()> epoch_;
  std::chrono::milliseconds promotion_holdoff_;
};

}  // namespace tandem::replicator
