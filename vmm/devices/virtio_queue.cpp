#include "vmm/devices/virtio_queue.h"

#include <cstring>
#include <string>

namespace tandem::vmm {

namespace {
constexpr uint64_t kDescBytes = 16;

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}
}  // namespace

void VirtQueue::validate(const GuestMemory& mem, uint16_t max_size) const {
  const uint64_t n = state_.size;
  if (n == 0 || n > max_size || (n & (n - 1)) != 0) {
    throw VirtioError("queue size " + std::to_string(n) + " is not a power of two in 1.." +
                      std::to_string(max_size));
  }
  if (state_.desc_addr % 16 != 0 || !mem.contains(state_.desc_addr, kDescBytes * n)) {
    throw VirtioError("descriptor table at " + hex(state_.desc_addr) + " is misaligned or outside RAM");
  }
  // avail: flags, idx, ring[n], used_event.
  if (state_.avail_addr % 2 != 0 || !mem.contains(state_.avail_addr, 6 + 2 * n)) {
    throw VirtioError("available ring at " + hex(state_.avail_addr) + " is misaligned or outside RAM");
  }
  // used: flags, idx, ring[n] of {id, len}, avail_event.
  if (state_.used_addr % 4 != 0 || !mem.contains(state_.used_addr, 6 + 8 * n)) {
    throw VirtioError("used ring at " + hex(state_.used_addr) + " is misaligned or outside RAM");
  }
}

uint16_t VirtQueue::read_u16(const GuestMemory& mem, uint64_t addr) const {
  uint16_t v;
  if (!mem.read(addr, {reinterpret_cast<uint8_t*>(&v), sizeof v})) {
    throw VirtioError("ring access at " + hex(addr) + " outside RAM");
  }
  return v;
}

bool VirtQueue::has_available(const GuestMemory& mem) const {
  const uint16_t avail_idx = read_u16(mem, state_.avail_addr + 2);
  const uint16_t outstanding = static_cast<uint16_t>(avail_idx - state_.next_avail);
  if (outstanding > state_.size) {
    throw VirtioError("available index " + std::to_string(avail_idx) + " is " +
                      std::to_string(outstanding) + " entries ahead of a queue of " +
                      std::to_string(state_.size));
  }
  return outstanding != 0;
}

DescriptorChain VirtQueue::pop(const GuestMemory& mem) {
  const uint64_t slot = state_.next_avail % state_.size;
  const uint16_t head = read_u16(mem, state_.avail_addr + 4 + 2 * slot);
  if (head >= state_.size) {
    throw VirtioError("available ring names descriptor " + std::to_string(head) +
                      " of a queue of " + std::to_string(state_.size));
  }
  DescriptorChain chain;
  chain.head = head;
  uint16_t index = head;
  // A well-formed chain visits each descriptor at most once, so more than `size` steps
  // means a loop: this bound is what keeps a hostile guest from hanging the host.
  for (uint32_t steps = 0;; ++steps) {
    if (steps >= state_.size) {
      throw VirtioError("descriptor chain from " + std::to_string(head) +
                        " is longer than the queue (a loop?)");
    }
    struct {
      uint64_t addr;
      uint32_t len;
      uint16_t flags;
      uint16_t next;
    } desc;
    static_assert(sizeof desc == kDescBytes);
    if (!mem.read(state_.desc_addr + kDescBytes * index, {reinterpret_cast<uint8_t*>(&desc), kDescBytes})) {
      throw VirtioError("descriptor table outside RAM");
    }
    if (desc.flags & kDescIndirect) {
      throw VirtioError("indirect descriptor, but VIRTIO_F_INDIRECT_DESC was not offered");
    }
    if (!mem.contains(desc.addr, desc.len)) {
      throw VirtioError("descriptor " + std::to_string(index) + " buffer " + hex(desc.addr) +
                        "+" + std::to_string(desc.len) + " is outside RAM");
    }
    if (desc.flags & kDescWrite) {
      chain.writable.push_back({desc.addr, desc.len});
    } else {
      if (!chain.writable.empty()) {
        throw VirtioError("readable descriptor after a writable one in chain " + std::to_string(head));
      }
      chain.readable.push_back({desc.addr, desc.len});
    }
    if (!(desc.flags & kDescNext)) break;
    if (desc.next >= state_.size) {
      throw VirtioError("descriptor " + std::to_string(index) + " links to " +
                        std::to_string(desc.next) + ", past the queue size");
    }
    index = desc.next;
  }
  ++state_.next_avail;
  return chain;
}

void VirtQueue::push_used(GuestMemory& mem, uint16_t head, uint32_t written) {
  const uint64_t slot = state_.next_used % state_.size;
  const uint32_t elem[2] = {head, written};
  ++state_.next_used;
  const uint16_t idx = state_.next_used;
  if (!mem.write(state_.used_addr + 4 + 8 * slot, {reinterpret_cast<const uint8_t*>(elem), sizeof elem}) ||
      !mem.write(state_.used_addr + 2, {reinterpret_cast<const uint8_t*>(&idx), sizeof idx})) {
    throw VirtioError("used ring outside RAM");
  }
}

}  // namespace tandem::vmm
