// virtio-rng: bytes come from the entropy callback, requests are capped, and a hostile
// queue is a device error, not a crash.
#include "vmm/devices/virtio_rng.h"

#include <gtest/gtest.h>

#include <cstring>

#include "vmm/guest_memory.h"

namespace tandem::vmm {
namespace {

constexpr uint64_t kBase = 0x8000'0000;

class VirtioRngTest : public ::testing::Test {
 protected:
  GuestMemory mem{kBase, 1 << 20};
  uint64_t calls = 0;
  VirtioRng rng{[this](std::span<uint8_t> out) {
    ++calls;
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(0xA0 + i);
  }};
  VirtQueue queue;

  // One descriptor of `len` writable bytes at `buf`, made available at avail index 1.
  void offer(uint64_t buf, uint32_t len) {
    queue.state().desc_addr = kBase + 0x1000;
    queue.state().avail_addr = kBase + 0x2000;
    queue.state().used_addr = kBase + 0x3000;
    queue.state().size = 8;
    queue.state().ready = 1;
    struct {
      uint64_t addr;
      uint32_t len;
      uint16_t flags, next;
    } desc{buf, len, VirtQueue::kDescWrite, 0};
    mem.write(kBase + 0x1000, {reinterpret_cast<const uint8_t*>(&desc), sizeof desc});
    const uint16_t avail[3] = {0, 1, 0};  // flags, idx = 1, ring[0] = descriptor 0
    mem.write(kBase + 0x2000, {reinterpret_cast<const uint8_t*>(avail), sizeof avail});
  }
  uint32_t used_len() {
    uint32_t len = 0;
    mem.read(kBase + 0x3000 + 4 + 4, {reinterpret_cast<uint8_t*>(&len), 4});
    return len;
  }
};

TEST_F(VirtioRngTest, FillsTheBufferFromTheEntropySource) {
  offer(kBase + 0x4000, 16);
  EXPECT_TRUE(rng.process_queue(0, queue, mem));
  EXPECT_EQ(calls, 1u);
  EXPECT_EQ(used_len(), 16u);
  uint8_t got[16];
  mem.read(kBase + 0x4000, got);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(got[i], 0xA0 + i);
}

TEST_F(VirtioRngTest, HugeRequestGetsAShortValidAnswer) {
  offer(kBase + 0x10000, 256 * 1024);
  EXPECT_TRUE(rng.process_queue(0, queue, mem));
  EXPECT_EQ(used_len(), VirtioRng::kMaxBytesPerRequest);
}

TEST_F(VirtioRngTest, BufferOutsideRamIsAVirtioErrorNotACrash) {
  offer(kBase + (1 << 20) - 8, 64);  // runs past the end of RAM
  EXPECT_THROW(rng.process_queue(0, queue, mem), VirtioError);
  EXPECT_EQ(calls, 0u);
}

}  // namespace
}  // namespace tandem::vmm
