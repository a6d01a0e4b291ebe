#pragma once
// The epoch file: the highest epoch (fencing token) this node has taken part in, kept in
// [node] state_dir so a restarted node never acts under an older epoch than it has seen.
#include <cstdint>
#include <optional>
#include <string>

namespace tandem::replicator {

class EpochStore {
 public:
  // `state_dir` empty: nothing is kept (tests, a node without a state directory).
  explicit EpochStore(std::string state_dir);
  const std::string& path() const { return path_; }
  // The stored epoch, if the file holds a positive number.
  std::optional<uint64_t> load() const;
  // Writes `epoch` (a temporary file renamed over the old one: never half a number).
  void store(uint64_t epoch) const;

 private:
  std::string dir_;
  std::string path_;
};

}  // namespace tandem::replicator
