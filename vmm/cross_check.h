#pragma once
// Lockstep cross-check of two CPU engines (docs/translator.md): two machines booted from the
// same guest, each with its own (deterministic, identical) World, typically one hart on the
// interpreter and one on the translator, run side by side in slices of N instructions with
// their state hashes compared after every slice. The first slice that differs is reported.
#include <cstdint>
#include <string>

#include "vmm/machine.h"

namespace tandem::vmm {

struct CrossCheckResult {
  bool same = true;          // every compared slice matched (and the exits agree)
  uint64_t checks = 0;       // state hash comparisons made
  uint64_t window_start = 0; // on a mismatch: the slice [window_start, icount) that differs
  uint64_t icount = 0;       // the icount reached (of machine a)
  uint64_t pc_a = 0, pc_b = 0;
  uint64_t hash_a = 0, hash_b = 0;
  RunResult exit;            // how machine a stopped
  std::string describe() const;
};

// Runs both machines to `until` (or an earlier exit) in slices of `every` instructions.
// Both machines must start from the same state.
CrossCheckResult cross_check(Machine& a, Machine& b, uint64_t every, uint64_t until);

}  // namespace tandem::vmm
