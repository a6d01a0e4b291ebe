#pragma once
// A split virtqueue (virtio 1.x) with Firecracker-style strict validation. Every guest-
// supplied address, length and index is checked before use; every violation throws
// VirtioError, which the transport turns into DEVICE_NEEDS_RESET. Rings and buffers are
// reached only through GuestMemory::read/write, never through raw host pointers.
#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "vmm/guest_memory.h"

namespace tandem::vmm {

// A guest driver broke the virtio contract (bad ring address, descriptor loop, ...).
class VirtioError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One guest buffer of a descriptor chain, already checked to lie inside RAM.
struct GuestBuffer {
  uint64_t addr;
  uint32_t len;
};

// A popped request: the readable (driver → device) buffers come first in a chain, then
// the writable (device → driver) ones.
struct DescriptorChain {
  uint16_t head = 0;
  std::vector<GuestBuffer> readable;
  std::vector<GuestBuffer> writable;
};

class VirtQueue {
 public:
  // The queue's configuration and progress as the transport programs it (plain, saved).
  struct State {
    uint64_t desc_addr = 0;
    uint64_t avail_addr = 0;
    uint64_t used_addr = 0;
    uint32_t size = 0;  // QueueNum
    uint32_t ready = 0;
    uint16_t next_avail = 0;  // device's index into the avail ring
    uint16_t next_used = 0;   // device's own used index (never read back from the guest)
    uint32_t reserved = 0;
  };
  static_assert(std::has_unique_object_representations_v<State>);

  static constexpr uint16_t kDescNext = 1, kDescWrite = 2, kDescIndirect = 4;

  State& state() { return state_; }
  const State& state() const { return state_; }
  void reset() { state_ = State{}; }

  // Checks size (power of two, 1..max_size) and that the three rings lie in RAM with
  // their required alignment. Throws VirtioError with the reason.
  void validate(const GuestMemory& mem, uint16_t max_size) const;

  // True if the driver has made a buffer available. Throws if the avail index is further
  // ahead than the queue size (a corrupt or hostile ring).
  bool has_available(const GuestMemory& mem) const;
  // Pops the next chain, checking every descriptor (index < size, buffers in RAM, no
  // indirect descriptors, readable before writable, at most `size` descriptors).
  DescriptorChain pop(const GuestMemory& mem);
  // Returns a chain to the driver with `written` bytes written into its writable buffers.
  void push_used(GuestMemory& mem, uint16_t head, uint32_t written);

 private:
  uint16_t read_u16(const GuestMemory& mem, uint64_t addr) const;
  State state_;
};

}  // namespace tandem::vmm
