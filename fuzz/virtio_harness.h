#pragma once
// The virtio queue target's input layout, shared with make_seeds (fuzz/virtio.cpp).
//
//   u8 device            0 = virtio-blk, 1 = virtio-rng, 2 = virtio-net (others wrap around)
//   u8 queue_size_log2   QueueNum = 1 << (this & 15)
//   u16 image_bytes      how many of the next bytes are guest RAM from kRam (the rings and
//                        buffers: queue q's descriptor table at desc(q), avail ring at
//                        avail(q), used ring at used(q); buffers anywhere, e.g. kBuffers)
//   image
//   ops*                 after the driver set the device up (status, features, every queue
//                        at those addresses, DRIVER_OK) and notified queue 0 once:
//                        u8 op: 0 notify (u8 queue) | 1 MMIO write (u16 offset, u32 value) |
//                        2 RAM write (u16 offset, u8 n, n bytes) | 3 MMIO read (u16 offset) |
//                        4 device reset (status 0) and the same setup again |
//                        5 net: a frame from the host (u16 n, n bytes) | 6 net: link (u8 up)
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "vmm/board.h"

namespace tandem::fuzz::virtio {

inline constexpr uint64_t kRam = vmm::kDramBase;
inline constexpr uint64_t kRamBytes = uint64_t{64} << 10;
// Queue q's rings (q < 2).
constexpr uint64_t desc(unsigned q) { return kRam + q * 0x3000; }
constexpr uint64_t avail(unsigned q) { return desc(q) + 0x1000; }
constexpr uint64_t used(unsigned q) { return desc(q) + 0x2000; }
inline constexpr uint64_t kBuffers = kRam + 0x6000;
inline constexpr uint64_t kDiskBytes = uint64_t{64} << 10;

enum Op : uint8_t { kNotify = 0, kMmioWrite = 1, kRamWrite = 2, kMmioRead = 3, kReset = 4, kNetReceive = 5, kNetLink = 6 };

// Builds a seed: `ram` is the guest RAM image from kRam (rings and buffers).
inline std::string input(uint8_t device, uint8_t queue_size_log2, const std::string& ram, const std::string& ops = "") {
  std::string s;
  s.push_back(static_cast<char>(device));
  s.push_back(static_cast<char>(queue_size_log2));
  const auto n = static_cast<uint16_t>(ram.size());
  s.append(reinterpret_cast<const char*>(&n), 2);
  s += ram;
  s += ops;
  return s;
}

// A descriptor of queue q written into a RAM image.
inline void put_desc(std::string& ram, unsigned q, unsigned index, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next) {
  const size_t at = (desc(q) - kRam) + index * 16;
  if (ram.size() < at + 16) ram.resize(at + 16);
  std::memcpy(ram.data() + at, &addr, 8);
  std::memcpy(ram.data() + at + 8, &len, 4);
  std::memcpy(ram.data() + at + 12, &flags, 2);
  std::memcpy(ram.data() + at + 14, &next, 2);
}

// Queue q's avail ring: flags 0, idx = heads.size(), ring = heads.
inline void put_avail(std::string& ram, unsigned q, const std::vector<uint16_t>& heads) {
  const size_t at = avail(q) - kRam;
  if (ram.size() < at + 4 + 2 * heads.size()) ram.resize(at + 4 + 2 * heads.size());
  const auto idx = static_cast<uint16_t>(heads.size());
  std::memcpy(ram.data() + at + 2, &idx, 2);
  std::memcpy(ram.data() + at + 4, heads.data(), 2 * heads.size());
}

inline void put_bytes(std::string& ram, uint64_t addr, const std::string& bytes) {
  const size_t at = addr - kRam;
  if (ram.size() < at + bytes.size()) ram.resize(at + bytes.size());
  std::memcpy(ram.data() + at, bytes.data(), bytes.size());
}

}  // namespace tandem::fuzz::virtio
