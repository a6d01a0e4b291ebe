#pragma once
// fencing::Verdict: the decision that a secondary goes live, and under which epoch.
//
// With an arbiter the verdict comes from LeaseKeeper (fencing/lease.h): the epoch is the
// arbiter's Grant.epoch, given only after the FailureDetector (fencing/detector/detector.h) found
// every path to the primary silent, or after a planned handover released the lease. With
// [fencing] arbiter = "none" the pair promotes on the loss of the link alone, with epoch + 1
// (heartbeat-only: it cannot tell a dead primary from a partitioned one).
#include <cstdint>
#include <string>

namespace tandem::fencing {

struct Verdict {
  bool promote = false;
  uint64_t new_epoch = 0;  // the epoch the promoted side runs under
  std::string why;         // for the log: "arbiter granted epoch 4 after ...", "planned handover"
};

}  // namespace tandem::fencing
