#pragma once
// fencing::Decider: who may promote. The live pair asks its Decider before a secondary
// goes live. This is the seam where an arbiter (witness, disk, etcd, STONITH) plugs in;
// HeartbeatDecider, the first implementation, promotes on the loss of the peer alone and
// so cannot tell a dead primary from a partitioned one.
#include <cstdint>
#include <string>

namespace tandem::fencing {

struct Suspicion {
  std::string reason;        // "link closed", "no heartbeat for 500 ms", "planned handover"
  uint64_t current_epoch = 0;
};

struct Verdict {
  bool promote = false;
  uint64_t new_epoch = 0;    // the epoch the promoted side runs under
  std::string why;
};

class Decider {
 public:
  virtual ~Decider() = default;
  virtual Verdict decide(const Suspicion& suspicion) = 0;
};

class HeartbeatDecider final : public Decider {
 public:
  Verdict decide(const Suspicion& s) override {
    return {true, s.current_epoch + 1, "peer lost (" + s.reason + "); heartbeat-only fencing"};
  }
};

}  // namespace tandem::fencing
