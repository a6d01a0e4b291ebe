#include "vmm/cross_check.h"

#include <fmt/format.h>

#include <algorithm>

#include "vmm/cpu/hart.h"

namespace tandem::vmm {

std::string CrossCheckResult::describe() const {
  if (same) {
    return fmt::format("cross-check: {} state hashes equal up to icount {} (exit {})", checks,
                       icount, to_string(exit.exit));
  }
  return fmt::format(
      "cross-check: states differ in icount window [{}, {}]: pc {:#x} vs {:#x}, hash {:016x} vs "
      "{:016x}",
      window_start, icount, pc_a, pc_b, hash_a, hash_b);
}

CrossCheckResult cross_check(Machine& a, Machine& b, uint64_t every, uint64_t until) {
  CrossCheckResult r;
  if (every == 0) every = 1;
  for (;;) {
    const uint64_t start = a.icount();
    const uint64_t target = std::min(until, start + every);
    const RunResult ra = a.run_until(target);
    const RunResult rb = b.run_until(target);
    r.exit = ra;
    r.icount = ra.icount;
    r.hash_a = a.state_hash();
    r.hash_b = b.state_hash();
    r.pc_a = a.hart().pc();
    r.pc_b = b.hart().pc();
    ++r.checks;
    if (r.hash_a != r.hash_b || ra.exit != rb.exit || ra.icount != rb.icount ||
        ra.code != rb.code) {
      r.same = false;
      r.window_start = start;
      return r;
    }
    if (ra.exit != Exit::Running || ra.icount >= until) return r;
  }
}

}  // namespace tandem::vmm
