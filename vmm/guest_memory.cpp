#include "vmm/guest_memory.h"

#include <sys/mman.h>
#include <xxhash.h>

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
  hash_dirty_.assign(words, 0);
  nonzero_.assign(words, 0);
  page_hash_.assign(page_count(), 0);
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
  invalidate_page_hashes();
  for (uint64_t p = 0; p < page_count(); ++p) {
    if (is_code_page(p)) {
      code_[p >> 6] &= ~(uint64_t{1} << (p & 63));
      if (code_listener_) code_listener_(p);
    }
  }
  ++dirty_generation_;
}

bool GuestMemory::hash_page(uint64_t page_index, uint64_t& hash) const {
  const uint8_t* page = data_ + (page_index << kPageShift);
  const uint64_t* words = reinterpret_cast<const uint64_t*>(page);
  uint64_t any = 0;
  for (size_t i = 0; i < kPageSize / 8; ++i) any |= words[i];
  if (any == 0) return false;
  hash = XXH3_64bits(page, kPageSize);
  return true;
}

void GuestMemory::invalidate_page_hashes() const {
  std::fill(hash_dirty_.begin(), hash_dirty_.end(), ~uint64_t{0});
}

void GuestMemory::refresh_page_hashes() const {
  bool cleared = false;
  for (uint64_t w = 0; w < hash_dirty_.size(); ++w) {
    if (hash_dirty_[w] == 0) continue;
    for (uint64_t bits = hash_dirty_[w]; bits != 0; bits &= bits - 1) {
      const uint64_t p = (w << 6) | static_cast<uint64_t>(__builtin_ctzll(bits));
      if (p >= page_count()) break;
      const uint64_t bit = uint64_t{1} << (p & 63);
      // Untouched pages are zero and never faulted in by hashing.
      if (page_touched(p) && hash_page(p, page_hash_[p])) {
        nonzero_[w] |= bit;
      } else {
        nonzero_[w] &= ~bit;
      }
    }
    hash_dirty_[w] = 0;
    cleared = true;
  }
  // A store TLB entry means "already marked": after clearing, stores must mark again.
  if (cleared) ++dirty_generation_;
}

}  // namespace tandem::vmm
