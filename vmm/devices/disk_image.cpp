#include "vmm/devices/disk_image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace tandem::vmm {

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
  hash_valid_ = false;
  if (!in.empty()) {
    // Marked before the write: a write that fails part-way may still have changed blocks.
    const uint64_t last = (offset + in.size() - 1) / kBlockBytes;
    for (uint64_t b = offset / kBlockBytes; b <= last; ++b) written_[b >> 6] |= uint64_t{1} << (b & 63);
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

uint64_t DiskImage::content_hash() const {
  if (hash_valid_) return hash_;
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  std::vector<uint8_t> chunk(1 << 20);
  for (uint64_t off = 0; off < size_; off += chunk.size()) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), size_ - off));
    // A read error hashes as zeros: the hash then differs from any healthy image.
    if (!read(off, {chunk.data(), n})) std::memset(chunk.data(), 0, n);
    XXH3_64bits_update(state, chunk.data(), n);
  }
  hash_ = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  hash_valid_ = true;
  return hash_;
}

}  // namespace tandem::vmm
