#include "vmm/guest_memory.h"

#include <sys/mman.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace tandem::vmm {

GuestMemory::GuestMemory(uint64_t base, uint64_t size) : base_(base), size_(size) {
  if (size == 0 || size % kPageSize != 0) {
    throw std::invalid_argument("guest memory size must be a non-zero multiple of 4 KiB");
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) {
    throw std::runtime_error("cannot reserve " + std::to_string(size >> 20) + " MiB of guest memory");
  }
  data_ = static_cast<uint8_t*>(p);
  const size_t words = (page_count() + 63) / 64;
  dirty_.assign(words, 0);
  code_.assign(words, 0);
  touched_.assign(words, 0);
}

GuestMemory::~GuestMemory() {
  if (data_) munmap(data_, size_);
}

bool GuestMemory::read(uint64_t addr, std::span<uint8_t> out) const {
  if (!contains(addr, out.size())) return false;
  std::memcpy(out.data(), host(addr), out.size());
  return true;
}

bool GuestMemory::write(uint64_t addr, std::span<const uint8_t> in) {
  if (!contains(addr, in.size())) return false;
  if (in.empty()) return true;
  mark_dirty(addr, in.size());
  std::memcpy(host(addr), in.data(), in.size());
  return true;
}

void GuestMemory::mark_dirty(uint64_t addr, uint64_t len) {
  if (len == 0 || !contains(addr, len)) return;
  const uint64_t first = (addr - base_) >> kPageShift;
  const uint64_t last = (addr - base_ + len - 1) >> kPageShift;
  for (uint64_t p = first; p <= last; ++p) note_write_page(p);
}

std::vector<uint64_t> GuestMemory::take_dirty_bitmap() {
  std::vector<uint64_t> out(dirty_.size(), 0);
  out.swap(dirty_);
  ++dirty_generation_;
  return out;
}

void GuestMemory::mark_all_dirty() {
  for (uint64_t p = 0; p < page_count(); ++p) mark_dirty_page(p);
}

void GuestMemory::clear() {
  // MADV_DONTNEED on private anonymous memory gives back zero pages and frees the host RAM.
  madvise(data_, size_, MADV_DONTNEED);
  std::fill(dirty_.begin(), dirty_.end(), 0);
  std::fill(touched_.begin(), touched_.end(), 0);
  for (uint64_t p = 0; p < page_count(); ++p) {
    if (is_code_page(p)) {
      code_[p >> 6] &= ~(uint64_t{1} << (p & 63));
      if (code_listener_) code_listener_(p);
    }
  }
  ++dirty_generation_;
}

}  // namespace tandem::vmm
