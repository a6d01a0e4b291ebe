#include "vmm/devices/disk_image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

namespace tandem::vmm {

// The block hashes are hashed as an array of host u64s; the value is compared across hosts.
static_assert(std::endian::native == std::endian::little, "block hashes are hashed as little-endian u64s");

namespace {

void set_bits(std::vector<uint64_t>& bits, uint64_t first, uint64_t last) {
  for (uint64_t b = first; b <= last; ++b) bits[b >> 6] |= uint64_t{1} << (b & 63);
}

// XXH3-64 of `len` zero bytes: what a hole hashes to. A full block's is computed once.
uint64_t zero_hash(uint64_t len, std::vector<uint8_t>& scratch) {
  static const uint64_t full_block = [] {
    const std::vector<uint8_t> zeros(DiskImage::kHashBlockBytes, 0);
    return XXH3_64bits(zeros.data(), zeros.size());
  }();
  if (len == DiskImage::kHashBlockBytes) return full_block;
  std::fill_n(scratch.begin(), len, 0);
  return XXH3_64bits(scratch.data(), len);
}

}  // namespace

DiskImage::DiskImage(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd_ < 0) throw DiskError("cannot open disk image " + path + ": " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    throw DiskError("disk image " + path + " is not a regular file");
  }
  size_ = static_cast<uint64_t>(st.st_size);
  written_.assign((block_count() + 63) / 64, 0);
  // Nothing is known about the content yet: every block's hash is stale.
  block_hashes_.assign(hash_block_count(), 0);
  hash_stale_.assign((hash_block_count() + 63) / 64, 0);
  if (hash_block_count() > 0) set_bits(hash_stale_, 0, hash_block_count() - 1);
}

DiskImage::~DiskImage() {
  if (fd_ >= 0) ::close(fd_);
}

bool DiskImage::read(uint64_t offset, std::span<uint8_t> out) const {
  if (offset > size_ || out.size() > size_ - offset) return false;
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

bool DiskImage::write(uint64_t offset, std::span<const uint8_t> in) {
  if (offset > size_ || in.size() > size_ - offset) return false;
  if (!in.empty()) {
    // Marked before the write: a write that fails part-way may still have changed blocks.
    const uint64_t end = offset + in.size() - 1;
    set_bits(written_, offset / kBlockBytes, end / kBlockBytes);
    set_bits(hash_stale_, offset / kHashBlockBytes, end / kHashBlockBytes);
    any_stale_ = true;
  }
  size_t done = 0;
  while (done < in.size()) {
    const ssize_t n = ::pwrite(fd_, in.data() + done, in.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

std::vector<uint64_t> DiskImage::take_written_blocks() {
  std::vector<uint64_t> out(written_.size(), 0);
  out.swap(written_);
  return out;
}

void DiskImage::mark_all_written() {
  for (uint64_t b = 0; b < block_count(); ++b) written_[b >> 6] |= uint64_t{1} << (b & 63);
}

bool DiskImage::flush() { return ::fdatasync(fd_) == 0; }

bool DiskImage::hash_block(uint64_t index, std::vector<uint8_t>& scratch, uint64_t& out) const {
  const uint64_t offset = index * kHashBlockBytes;
  const size_t len = static_cast<size_t>(std::min(kHashBlockBytes, size_ - offset));
  const bool ok = read(offset, {scratch.data(), len});
  // A read error hashes as zeros: the hash then differs from a healthy image's (unless the
  // block really was zero) and the caller retries the block next time.
  if (!ok) std::fill_n(scratch.begin(), len, 0);
  out = XXH3_64bits(scratch.data(), len);
  return ok;
}

uint64_t DiskImage::content_hash() const {
  if (!any_stale_) return hash_;
  std::vector<uint8_t> scratch(kHashBlockBytes);
  bool unreadable = false;
  // Blocks are visited in ascending order; SEEK_DATA from a block's start tells where the
  // next data is, so every block that ends before it is a hole (zeros) and is not read.
  // A filesystem without hole support reports everything as data: all blocks are read.
  uint64_t hole_until = 0;
  for (size_t word = 0; word < hash_stale_.size(); ++word) {
    uint64_t bits = std::exchange(hash_stale_[word], 0);
    while (bits != 0) {
      const uint64_t b = word * 64 + static_cast<uint64_t>(std::countr_zero(bits));
      bits &= bits - 1;
      const uint64_t start = b * kHashBlockBytes;
      const uint64_t end = std::min(start + kHashBlockBytes, size_);
      if (end > hole_until) {
        const off_t data = ::lseek(fd_, static_cast<off_t>(start), SEEK_DATA);
        // ENXIO: no data from here to the end of the file. Any other error: assume data.
        hole_until = data >= 0 ? static_cast<uint64_t>(data) : errno == ENXIO ? size_ : start;
      }
      if (end <= hole_until) {
        block_hashes_[b] = zero_hash(end - start, scratch);
      } else if (!hash_block(b, scratch, block_hashes_[b])) {
        hash_stale_[word] |= uint64_t{1} << (b & 63);
        unreadable = true;
      }
    }
  }
  any_stale_ = unreadable;
  hash_ = XXH3_64bits(block_hashes_.data(), block_hashes_.size() * sizeof(uint64_t));
  return hash_;
}

uint64_t DiskImage::content_hash_uncached() const {
  std::vector<uint8_t> scratch(kHashBlockBytes);
  std::vector<uint64_t> hashes(hash_block_count());
  for (uint64_t b = 0; b < hashes.size(); ++b) (void)hash_block(b, scratch, hashes[b]);
  return XXH3_64bits(hashes.data(), hashes.size() * sizeof(uint64_t));
}

}  // namespace tandem::vmm
