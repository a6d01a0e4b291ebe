#include "vmm/bus.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace tandem::vmm {

namespace {
bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
  return a < b + blen && b < a + alen;
}
}  // namespace

void Bus::map(uint64_t base, uint64_t size, Device& device) {
  if (size == 0 || base + size < base) throw std::invalid_argument("bus: bad region size");
  if (overlaps(base, size, ram_.base(), ram_.size())) {
    throw std::invalid_argument("bus: " + std::string(device.name()) + " overlaps RAM");
  }
  for (const Region& r : regions_) {
    if (overlaps(base, size, r.base, r.size)) {
      throw std::invalid_argument("bus: " + std::string(device.name()) + " overlaps " +
                                  std::string(r.device->name()));
    }
  }
  const auto at = std::upper_bound(regions_.begin(), regions_.end(), base,
                                   [](uint64_t b, const Region& r) { return b < r.base; });
  regions_.insert(at, Region{base, size, &device});
  last_hit_ = 0;
}

Device* Bus::find(uint64_t paddr, unsigned size, uint64_t& offset) {
  const auto covers = [&](const Region& r) {
    return paddr - r.base < r.size && size <= r.size - (paddr - r.base);
  };
  // Guests hammer one device at a time (the UART byte by byte): try the last one first.
  if (last_hit_ < regions_.size() && covers(regions_[last_hit_])) {
    offset = paddr - regions_[last_hit_].base;
    return regions_[last_hit_].device;
  }
  auto it = std::upper_bound(regions_.begin(), regions_.end(), paddr,
                             [](uint64_t a, const Region& r) { return a < r.base; });
  if (it == regions_.begin()) return nullptr;
  --it;
  if (!covers(*it)) return nullptr;
  last_hit_ = static_cast<size_t>(it - regions_.begin());
  offset = paddr - it->base;
  return it->device;
}

bool Bus::read(uint64_t paddr, unsigned size, uint64_t& value) {
  if (ram_.contains(paddr, size)) {
    value = 0;
    std::memcpy(&value, ram_.host(paddr), size);
    return true;
  }
  uint64_t offset;
  Device* d = find(paddr, size, offset);
  if (!d) return false;
  value = 0;
  return d->read(offset, size, value);
}

bool Bus::write(uint64_t paddr, unsigned size, uint64_t value) {
  if (ram_.contains(paddr, size)) {
    const uint64_t page = (paddr - ram_.base()) >> kPageShift;
    ram_.note_write_page(page);
    const uint64_t last = (paddr + size - 1 - ram_.base()) >> kPageShift;
    if (last != page) ram_.note_write_page(last);
    std::memcpy(ram_.host(paddr), &value, size);
    return true;
  }
  uint64_t offset;
  Device* d = find(paddr, size, offset);
  if (!d) return false;
  return d->write(offset, size, value);
}

}  // namespace tandem::vmm
