#pragma once
// Whether held output may leave the primary now, asked by the pair's output gate for every
// release (replicator/output_gate.h). The output rule (acknowledged by the secondary) is
// the gate's own; this is the fencing half: a side that cannot prove it may be the primary
// releases nothing (self-fencing, docs/fencing.md).
#include "fencing/ack_freshness.h"
#include "fencing/lease.h"

namespace tandem::fencing {

class ReleasePolicy {
 public:
  virtual ~ReleasePolicy() = default;
  // `acknowledged`: the gate is closed (PROTECTED) and the secondary acknowledged this
  // output. Called under the gate's lock on the output path: cheap, never blocking.
  virtual bool may_release(bool acknowledged) = 0;
};

// With an arbiter: the lease is valid, or the output was acknowledged and the secondary's
// acks are fresh (may_release_output).
class LeaseReleasePolicy final : public ReleasePolicy {
 public:
  LeaseReleasePolicy(const LeaseKeeper& lease, const AckFreshness& acks) : lease_(lease), acks_(acks) {}
  bool may_release(bool acknowledged) override {
    return may_release_output(lease_.may_release_output(), acknowledged, acks_);
  }

 private:
  const LeaseKeeper& lease_;
  const AckFreshness& acks_;
};

}  // namespace tandem::fencing
