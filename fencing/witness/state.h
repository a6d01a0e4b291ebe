#pragma once
// The witness's state file: for each VM the newest epoch, its holder and the longest ttl
// granted under it. Written atomically (temp file, fsync, rename, fsync of the directory) and
// checked on load (magic, length, XXH3-64 checksum), so a crash leaves the old or the new
// state and never a half-written one that would be trusted. See docs/fencing.md.
#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>

namespace tandem::fencing {

struct WitnessRecord {
  uint64_t epoch = 0;                 // the highest epoch ever granted for the VM
  std::string holder;                 // its holder; "" = nobody (never granted, or released)
  std::chrono::milliseconds ttl{0};   // longest ttl granted under `epoch`: the restart wait
  uint64_t replica_floor = 0;         // set by ADVANCE: an acquire with a known epoch below it is
                                      // refused (a stale replica); 0 = none (also old state files)
};
using WitnessRecords = std::map<std::string, WitnessRecord>;  // by vm_id

// The state file exists but cannot be trusted (bad magic, truncated, checksum mismatch,
// unparsable). tandem-witness exits 1 on it: starting empty could grant an old epoch again.
class StateFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A missing file is a first start (empty). Throws StateFileError for a file that cannot be
// trusted and std::runtime_error when it cannot be read at all.
WitnessRecords load_witness_state(const std::string& path);

// Replaces the file atomically and durably; throws std::runtime_error naming the failed step.
void save_witness_state(const std::string& path, const WitnessRecords& records);

}  // namespace tandem::fencing
