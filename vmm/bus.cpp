#include "vmm/bus.h"

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
  for (const auto& [b, r] : regions_) {
    if (overlaps(base, size, r.base, r.size)) {
      throw std::invalid_argument("bus: " + std::string(device.name()) + " overlaps " +
                                  std::string(r.device->name()));
    }
  }
  regions_.emplace(base, Region{base, size, &device});
}

Device* Bus::find(uint64_t paddr, unsigned size, uint64_t& offset) {
  auto it = regions_.upper_bound(paddr);
  if (it == regions_.begin()) return nullptr;
  --it;
  const Region& r = it->second;
  if (paddr - r.base >= r.size || size > r.size - (paddr - r.base)) return nullptr;
  offset = paddr - r.base;
  return r.device;
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
