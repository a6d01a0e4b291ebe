#pragma once
// The epoch file: the highest epoch (fencing token) this node has taken part in, kept in
// [node] state_dir so a restarted node never acts under an older epoch than it has seen.
// One decimal number and a line break, replaced atomically and durably (net::write_file_durably:
// temp file, fsync, rename, fsync of the directory), so a crash leaves the old epoch or the new
// one. A file that is not exactly that is refused: starting from epoch 1 instead could let this
// node act under an epoch the pair has long left behind.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace tandem::replicator {

// The epoch file exists but cannot be trusted (or read). Node::start stops on it.
class EpochFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class EpochStore {
 public:
  // `state_dir` empty: nothing is kept (tests, a node without a state directory).
  explicit EpochStore(std::string state_dir);
  const std::string& path() const { return path_; }
  // The stored epoch; nullopt when there is no state directory or no file yet (a first start).
  // Throws EpochFileError naming the file and the problem for a file that is not one positive
  // decimal number (and a line break), or that cannot be read.
  std::optional<uint64_t> load() const;
  // Writes `epoch` durably (creating the directory). Returns false after logging an error naming
  // the failed step when it could not be kept.
  bool store(uint64_t epoch) const;

 private:
  std::string dir_;
  std::string path_;
};

}  // namespace tandem::replicator
