// Files that must survive a crash or a power loss: the witness's state file, a node's epoch
// file. Knows nothing of what the bytes mean.
#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>

namespace tandem::net {

// Replaces `path` with `bytes` atomically and durably: write `path`.tmp (mode 0600), fsync it,
// rename it over `path`, fsync the directory. After it returns the new contents survive a crash
// or a power loss; a crash before the rename leaves the old file intact (and a stale .tmp, which
// the next write replaces). Throws std::runtime_error naming the step that failed and why.
void write_file_durably(const std::string& path, const std::string& bytes);

// Creates `path` holding `bytes`, durably, and only if it does not exist yet (the temporary file
// is hard-linked into place, so a crash leaves no file or the whole one). Throws
// std::runtime_error naming the step, e.g. "cannot create X: File exists".
void create_file_durably(const std::string& path, const std::string& bytes);

// read_small_file's file is larger than its limit (a wrong or corrupt file: not read into memory).
class FileTooLarge : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The whole file, or nullopt when it does not exist. Throws FileTooLarge past `max_bytes` and
// std::runtime_error when it cannot be read.
std::optional<std::string> read_small_file(const std::string& path, size_t max_bytes);

}  // namespace tandem::net
