#pragma once
// Guest RAM: one contiguous, lazily backed host mapping at the DRAM base.
// Untouched pages cost nothing (MAP_NORESERVE anonymous memory), so resident memory
// follows what the guest touches. Every write path (CPU stores and device DMA) marks the
// page dirty; writes to pages that hold decoded instructions notify the CPU. The same
// write paths mark the page "hash-dirty", so state hashes rehash only pages written since.
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace tandem::vmm {

inline constexpr uint64_t kPageShift = 12;
inline constexpr uint64_t kPageSize = uint64_t{1} << kPageShift;

class GuestMemory {
 public:
  GuestMemory(uint64_t base, uint64_t size);
  ~GuestMemory();
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  uint64_t base() const { return base_; }
  uint64_t size() const { return size_; }
  uint64_t page_count() const { return size_ >> kPageShift; }

  // True when [addr, addr+len) lies inside RAM (overflow-safe).
  bool contains(uint64_t addr, uint64_t len) const {
    return addr >= base_ && len <= size_ && addr - base_ <= size_ - len;
  }
  // Unchecked: the caller has checked contains().
  uint8_t* host(uint64_t addr) { return data_ + (addr - base_); }
  const uint8_t* host(uint64_t addr) const { return data_ + (addr - base_); }

  // Checked copies for devices and loaders. False (and nothing copied) when out of RAM.
  bool read(uint64_t addr, std::span<uint8_t> out) const;
  bool write(uint64_t addr, std::span<const uint8_t> in);

  // Dirty tracking, one bit per 4 KiB page. CPU store fast paths call mark_dirty_page().
  void mark_dirty_page(uint64_t page_index) {
    dirty_[page_index >> 6] |= uint64_t{1} << (page_index & 63);
  }
  void mark_dirty(uint64_t addr, uint64_t len);
  // Returns the bitmap (bit i = page i dirty since the last call) and clears it.
  std::vector<uint64_t> take_dirty_bitmap();
  // Bumped whenever dirty or hash-dirty bits are cleared: a CPU that caches "this page is
  // already dirty" (e.g. a host-pointer store TLB) must drop that cache when this changes.
  uint64_t dirty_generation() const { return dirty_generation_; }
  // Marks every page dirty (after restore, so the next incremental checkpoint is complete).
  void mark_all_dirty();

  // Code tracking: the CPU marks pages it has decoded instructions from; a write to such a
  // page clears the mark and calls the listener (which drops the decoded page).
  void mark_code_page(uint64_t page_index) {
    code_[page_index >> 6] |= uint64_t{1} << (page_index & 63);
  }
  bool is_code_page(uint64_t page_index) const {
    return (code_[page_index >> 6] >> (page_index & 63)) & 1;
  }
  void set_code_write_listener(std::function<void(uint64_t page_index)> listener) {
    code_listener_ = std::move(listener);
  }
  // Called by every write path for each page written.
  void note_write_page(uint64_t page_index) {
    const uint64_t word = page_index >> 6;
    const uint64_t bit = uint64_t{1} << (page_index & 63);
    dirty_[word] |= bit;
    touched_[word] |= bit;
    hash_dirty_[word] |= bit;
    if (is_code_page(page_index)) [[unlikely]] {
      code_[page_index >> 6] &= ~(uint64_t{1} << (page_index & 63));
      if (code_listener_) code_listener_(page_index);
    }
  }

  // A page is "possibly non-zero" once the guest or a device has written it; used to skip
  // untouched pages in snapshots and hashes without faulting them in.
  bool page_touched(uint64_t page_index) const {
    return (touched_[page_index >> 6] >> (page_index & 63)) & 1;
  }
  void mark_touched_page(uint64_t page_index) {
    touched_[page_index >> 6] |= uint64_t{1} << (page_index & 63);
  }
  // Zero-fill all of RAM and forget touched/dirty/code state (releases host memory).
  void clear();

  // Per-page content hashes for Machine::state_hash(). Calls fn(page_index, XXH3-64 of the
  // page) for every non-zero page in ascending order, rehashing only pages written since
  // the last call (every write path marks them; the rest come from a cache). Clearing the
  // hash-dirty bits bumps dirty_generation(), so CPU store caches mark pages again.
  template <class Fn>
  void for_each_page_hash(Fn&& fn) const {
    refresh_page_hashes();
    for (uint64_t w = 0; w < nonzero_.size(); ++w) {
      for (uint64_t bits = nonzero_[w]; bits != 0; bits &= bits - 1) {
        const uint64_t p = (w << 6) | static_cast<uint64_t>(__builtin_ctzll(bits));
        fn(p, page_hash_[p]);
      }
    }
  }
  // The same sequence computed from RAM alone, ignoring (and not updating) the cache: the
  // reference the cached path is tested against.
  template <class Fn>
  void for_each_page_hash_uncached(Fn&& fn) const {
    for (uint64_t p = 0; p < page_count(); ++p) {
      uint64_t hash;
      if (page_touched(p) && hash_page(p, hash)) fn(p, hash);
    }
  }
  // Forgets every cached page hash (the next for_each_page_hash() rehashes all touched pages).
  void invalidate_page_hashes() const;

 private:
  uint64_t base_;
  uint64_t size_;
  uint8_t* data_ = nullptr;
  std::vector<uint64_t> dirty_;
  std::vector<uint64_t> code_;
  std::vector<uint64_t> touched_;
  std::function<void(uint64_t)> code_listener_;
  // Page hash cache (mutable: hashing is logically const). hash_dirty_: written since the
  // last refresh; nonzero_: the page was non-zero at its last refresh; page_hash_: its XXH3.
  void refresh_page_hashes() const;
  // False for an all-zero page; otherwise true with its XXH3-64 in hash.
  bool hash_page(uint64_t page_index, uint64_t& hash) const;
  mutable std::vector<uint64_t> hash_dirty_;
  mutable std::vector<uint64_t> nonzero_;
  mutable std::vector<uint64_t> page_hash_;
  mutable uint64_t dirty_generation_ = 0;
};

}  // namespace tandem::vmm
