#pragma once
// A file-backed disk: the only holder of the image's file descriptor. Reads and writes go
// straight to the file (pread/pwrite), so the guest's writes persist. The content hash
// (XXH3-64 of the whole image) is what snapshots record for the disk; it is cached and
// recomputed only after a write.
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace tandem::vmm {

class DiskError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class DiskImage {
 public:
  static constexpr uint64_t kSectorBytes = 512;

  // Opens `path` read-write. Throws DiskError naming the file and the reason.
  explicit DiskImage(const std::string& path);
  ~DiskImage();
  DiskImage(const DiskImage&) = delete;
  DiskImage& operator=(const DiskImage&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size_bytes() const { return size_; }
  uint64_t sectors() const { return size_ / kSectorBytes; }

  // Whole-buffer I/O at a byte offset; false on a host I/O error or past the end.
  bool read(uint64_t offset, std::span<uint8_t> out) const;
  bool write(uint64_t offset, std::span<const uint8_t> in);
  bool flush();

  uint64_t content_hash() const;

  // Written-block tracking for incremental checkpoints, one bit per kBlockBytes block
  // (the last block may be short). write() marks the blocks it spans, even if it fails part-way.
  static constexpr uint64_t kBlockBytes = 4096;
  uint64_t block_count() const { return (size_ + kBlockBytes - 1) / kBlockBytes; }
  // Returns the bitmap (bit i = block i written since the last call) and clears it.
  std::vector<uint64_t> take_written_blocks();
  // Marks every block written (after a restore, so the next incremental is complete).
  void mark_all_written();

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  mutable bool hash_valid_ = false;
  mutable uint64_t hash_ = 0;
  std::vector<uint64_t> written_;
};

}  // namespace tandem::vmm
