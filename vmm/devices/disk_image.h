#pragma once
// A file-backed disk: the only holder of the image's file descriptor. Reads and writes go
// straight to the file (pread/pwrite), so the guest's writes persist.
//
// The content hash (what snapshots, audits and log headers record for the disk) is XXH3-64
// over the array of per-block XXH3-64s, one per kHashBlockBytes block (the last may be
// short). The block hashes are cached; write() marks the blocks it touches, so the hash
// after a write costs that block's read plus a hash over the array, not a read of the image
// (as GuestMemory does for RAM pages). Every change must go through write(): a host-side
// change to the file behind the VM's back is not supported (it goes unseen by the hash
// until the image is opened again).
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

  // 64 KiB: a guest write (4 KiB to 128 KiB in practice) rehashes one or two blocks (~15 µs
  // each), while the array hashed per audit stays 1/8192 of the disk (128 KiB for 1 GiB,
  // 8 MiB for 64 GiB). 4 KiB blocks would make that array (and the cache) 16x bigger.
  static constexpr uint64_t kHashBlockBytes = uint64_t{64} << 10;
  uint64_t hash_block_count() const { return (size_ + kHashBlockBytes - 1) / kHashBlockBytes; }
  // Rehashes the blocks written since the last call (a freshly opened image: all of them,
  // holes known to the filesystem without reading them), then hashes the array.
  uint64_t content_hash() const;
  // The same value from scratch: reads and hashes every byte, touches no cache (tests, bench).
  uint64_t content_hash_uncached() const;

  // Written-block tracking for incremental checkpoints, one bit per kBlockBytes block
  // (the last block may be short). write() marks the blocks it spans, even if it fails part-way.
  // Separate from the hash cache's marks: checkpoints take these, audits must not.
  static constexpr uint64_t kBlockBytes = 4096;
  uint64_t block_count() const { return (size_ + kBlockBytes - 1) / kBlockBytes; }
  // Returns the bitmap (bit i = block i written since the last call) and clears it.
  std::vector<uint64_t> take_written_blocks();
  // Marks every block written (after a restore, so the next incremental is complete). The
  // hash cache is left alone: the restore's writes went through write(), which marked them.
  void mark_all_written();

 private:
  // XXH3-64 of block `index` read from the file; false (and the hash of zeros) on a read error.
  bool hash_block(uint64_t index, std::vector<uint8_t>& scratch, uint64_t& out) const;

  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  std::vector<uint64_t> written_;
  // The hash cache: one XXH3 per hash block, and a bit per block whose XXH3 is stale.
  mutable std::vector<uint64_t> block_hashes_;
  mutable std::vector<uint64_t> hash_stale_;
  mutable bool any_stale_ = true;
  mutable uint64_t hash_ = 0;
};

}  // namespace tandem::vmm
