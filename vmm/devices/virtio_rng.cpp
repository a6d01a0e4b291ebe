#include "vmm/devices/virtio_rng.h"

#include <algorithm>
#include <vector>

namespace tandem::vmm {

bool VirtioRng::process_queue(unsigned /*index*/, VirtQueue& queue, GuestMemory& mem) {
  bool used = false;
  std::vector<uint8_t> bytes;
  // At most one queue's worth per notify, as for virtio-blk.
  for (uint32_t n = 0; n < queue.state().size && queue.has_available(mem); ++n) {
    const DescriptorChain chain = queue.pop(mem);
    uint64_t want = 0;
    for (const GuestBuffer& b : chain.writable) want += b.len;
    want = std::min<uint64_t>(want, kMaxBytesPerRequest);
    bytes.resize(want);
    if (want > 0) entropy_(bytes);
    uint64_t done = 0;
    for (const GuestBuffer& b : chain.writable) {
      if (done == want) break;
      const uint64_t len = std::min<uint64_t>(b.len, want - done);
      // Buffers were checked to lie in RAM when the chain was popped.
      mem.write(b.addr, std::span<const uint8_t>(bytes.data() + done, len));
      done += len;
    }
    queue.push_used(mem, chain.head, static_cast<uint32_t>(done));
    used = true;
  }
  return used;
}

}  // namespace tandem::vmm
