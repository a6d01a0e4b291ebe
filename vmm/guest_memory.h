#pragma once
// Guest RAM: one contiguous, lazily backed host mapping at the DRAM base.
// Untouched pages cost nothing (MAP_NORESERVE anonymous memory), so resident memory
// follows what the guest touches. Every write path (CPU stores and device DMA) marks the
// page dirty; writes to pages that hold decoded instructions notify the CPU.
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
  // Bumped whenever dirty bits are cleared: a CPU that caches "this page is already
  // dirty" (e.g. a host-pointer store TLB) must drop that cache when this changes.
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
    mark_dirty_page(page_index);
    mark_touched_page(page_index);
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

 private:
  uint64_t base_;
  uint64_t size_;
  uint8_t* data_ = nullptr;
  std::vector<uint64_t> dirty_;
  std::vector<uint64_t> code_;
  std::vector<uint64_t> touched_;
  std::function<void(uint64_t)> code_listener_;
  uint64_t dirty_generation_ = 0;
};

}  // namespace tandem::vmm
