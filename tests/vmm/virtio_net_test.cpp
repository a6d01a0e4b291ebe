// virtio-net over the virtio-mmio transport: configuration space, transmit and receive
// paths, link status, and every guest mistake (malformed chains, oversize or short frames,
// offload requests, frames before DRIVER_OK) ending as a dropped frame or DEVICE_NEEDS_RESET,
// never as a crash or an invalid frame handed to the host.
#include "vmm/devices/virtio_net.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <sstream>
#include <vector>

#include "tests/vmm/device_test_support.h"
#include "vmm/machine.h"

namespace tandem::vmm {
namespace {

using testing::LevelRecorder;

constexpr uint64_t kRam = 0x8000'0000;
constexpr uint64_t kRamBytes = 1 << 20;
constexpr unsigned kIrq = 3;
constexpr uint16_t kQueueSize = 8;
// Guest layout: per queue a descriptor table, avail and used ring; buffers above 0x10000.
constexpr uint64_t kRings[2] = {kRam + 0x1000, kRam + 0x4000};
constexpr uint64_t kBuf = kRam + 0x10000;
constexpr uint32_t kHdr = VirtioNet::kHeaderBytes;

uint64_t desc_table(unsigned q) { return kRings[q]; }
uint64_t avail_ring(unsigned q) { return kRings[q] + 0x1000; }
uint64_t used_ring(unsigned q) { return kRings[q] + 0x2000; }

std::vector<uint8_t> make_frame(size_t len, uint8_t seed = 1) {
  std::vector<uint8_t> f(len);
  for (size_t i = 0; i < len; ++i) f[i] = static_cast<uint8_t>(seed + i * 7);
  return f;
}

class VirtioNetTest : public ::testing::Test {
 protected:
  VirtioNetTest()
      : mem(kRam, kRamBytes),
        net(NicConfig{{0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc}, 1500, true},
            [this](std::span<const uint8_t> f) { sent.emplace_back(f.begin(), f.end()); }),
        mmio(&net, mem, IrqLine{&irq, kIrq}) {}

  uint32_t rd(uint64_t off, unsigned size = 4) {
    uint64_t v = 0;
    EXPECT_TRUE(mmio.read(off, size, v));
    return static_cast<uint32_t>(v);
  }
  void wr(uint64_t off, uint32_t v) { EXPECT_TRUE(mmio.write(off, 4, v)); }
  template <typename T>
  void put(uint64_t addr, const T& v) {
    ASSERT_TRUE(mem.write(addr, {reinterpret_cast<const uint8_t*>(&v), sizeof v}));
  }
  template <typename T>
  T get(uint64_t addr) {
    T v{};
    EXPECT_TRUE(mem.read(addr, {reinterpret_cast<uint8_t*>(&v), sizeof v}));
    return v;
  }

  void negotiate() {
    wr(VirtioMmio::kStatus, VirtioMmio::kStatusAcknowledge | VirtioMmio::kStatusDriver);
    wr(VirtioMmio::kDriverFeaturesSel, 0);
    wr(VirtioMmio::kDriverFeatures, static_cast<uint32_t>(net.device_features()));
    wr(VirtioMmio::kDriverFeaturesSel, 1);
    wr(VirtioMmio::kDriverFeatures, 1);  // VERSION_1
    wr(VirtioMmio::kStatus, VirtioMmio::kStatusAcknowledge | VirtioMmio::kStatusDriver |
                                VirtioMmio::kStatusFeaturesOk);
    ASSERT_TRUE(rd(VirtioMmio::kStatus) & VirtioMmio::kStatusFeaturesOk);
  }
  void setup_queue(unsigned q) {
    wr(VirtioMmio::kQueueSel, q);
    wr(VirtioMmio::kQueueNum, kQueueSize);
    wr(VirtioMmio::kQueueDescLow, static_cast<uint32_t>(desc_table(q)));
    wr(VirtioMmio::kQueueDescHigh, 0);
    wr(VirtioMmio::kQueueDriverLow, static_cast<uint32_t>(avail_ring(q)));
    wr(VirtioMmio::kQueueDriverHigh, 0);
    wr(VirtioMmio::kQueueDeviceLow, static_cast<uint32_t>(used_ring(q)));
    wr(VirtioMmio::kQueueDeviceHigh, 0);
    wr(VirtioMmio::kQueueReady, 1);
    ASSERT_EQ(rd(VirtioMmio::kQueueReady), 1u);
  }
  void driver_ok() { wr(VirtioMmio::kStatus, rd(VirtioMmio::kStatus) | VirtioMmio::kStatusDriverOk); }
  void bring_up() {
    negotiate();
    setup_queue(VirtioNet::kRxQueue);
    setup_queue(VirtioNet::kTxQueue);
    driver_ok();
  }
  bool needs_reset() { return rd(VirtioMmio::kStatus) & VirtioMmio::kStatusNeedsReset; }

  void desc(unsigned q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
    struct {
      uint64_t addr;
      uint32_t len;
      uint16_t flags, next;
    } d{addr, len, flags, next};
    put(desc_table(q) + 16 * i, d);
  }
  // Publishes chain `head` on queue `q`; notifies if asked.
  void publish(unsigned q, uint16_t head, bool notify = true) {
    const uint16_t idx = get<uint16_t>(avail_ring(q) + 2);
    put<uint16_t>(avail_ring(q) + 4 + 2 * (idx % kQueueSize), head);
    put<uint16_t>(avail_ring(q) + 2, static_cast<uint16_t>(idx + 1));
    if (notify) wr(VirtioMmio::kQueueNotify, q);
  }
  uint16_t used_idx(unsigned q) { return get<uint16_t>(used_ring(q) + 2); }
  uint32_t used_len(unsigned q, uint16_t n) { return get<uint32_t>(used_ring(q) + 4 + 8 * (n % kQueueSize) + 4); }

  // Transmits `frame` behind a virtio header (with `hdr_flags`/`gso`) in one descriptor.
  void transmit(const std::vector<uint8_t>& frame, uint8_t hdr_flags = 0, uint8_t gso = 0) {
    std::vector<uint8_t> bytes(kHdr, 0);
    bytes[0] = hdr_flags;
    bytes[1] = gso;
    bytes.insert(bytes.end(), frame.begin(), frame.end());
    ASSERT_TRUE(mem.write(kBuf, bytes));
    desc(VirtioNet::kTxQueue, 0, kBuf, static_cast<uint32_t>(bytes.size()), 0);
    publish(VirtioNet::kTxQueue, 0);
  }
  // Posts one receive buffer of `len` bytes at kBuf + 0x8000.
  void post_rx(uint32_t len, uint16_t head = 0) {
    desc(VirtioNet::kRxQueue, head, kBuf + 0x8000, len, VirtQueue::kDescWrite);
    publish(VirtioNet::kRxQueue, head);
  }

  GuestMemory mem;
  LevelRecorder irq;
  std::vector<std::vector<uint8_t>> sent;
  VirtioNet net;
  VirtioMmio mmio;
};

TEST_F(VirtioNetTest, IdentityFeaturesAndConfigSpace) {
  EXPECT_EQ(rd(VirtioMmio::kDeviceId), 1u);
  wr(VirtioMmio::kDeviceFeaturesSel, 0);
  const uint32_t low = rd(VirtioMmio::kDeviceFeatures);
  EXPECT_TRUE(low & (1u << 3));   // MTU
  EXPECT_TRUE(low & (1u << 5));   // MAC
  EXPECT_TRUE(low & (1u << 16));  // STATUS
  EXPECT_FALSE(low & (1u << 0));  // no checksum offload
  EXPECT_FALSE(low & (1u << 15));  // no mergeable receive buffers
  wr(VirtioMmio::kDeviceFeaturesSel, 1);
  EXPECT_EQ(rd(VirtioMmio::kDeviceFeatures), 1u);  // VERSION_1 only
  for (unsigned i = 0; i < 6; ++i) EXPECT_EQ(rd(VirtioMmio::kConfig + i, 1), net.config().mac[i]);
  EXPECT_EQ(rd(VirtioMmio::kConfig + 6, 2), VirtioNet::kStatusLinkUp);
  EXPECT_EQ(rd(VirtioMmio::kConfig + 8, 2), 1u);     // one queue pair
  EXPECT_EQ(rd(VirtioMmio::kConfig + 10, 2), 1500u);  // MTU
  EXPECT_EQ(rd(VirtioMmio::kConfig + 12, 4), 0u);     // past the end
}

TEST_F(VirtioNetTest, MtuOutsideTheSupportedRangeIsRefused) {
  EXPECT_THROW(VirtioNet(NicConfig{{}, 40, true}, nullptr), std::invalid_argument);
  EXPECT_THROW(VirtioNet(NicConfig{{}, 9001, true}, nullptr), std::invalid_argument);
}

TEST_F(VirtioNetTest, TransmitHandsTheFrameWithoutHeaderToTheHost) {
  bring_up();
  const auto frame = make_frame(60);
  transmit(frame);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0], frame);
  EXPECT_EQ(used_idx(VirtioNet::kTxQueue), 1);
  EXPECT_TRUE(irq.at(kIrq));
  EXPECT_EQ(net.stats().tx_frames, 1u);
  EXPECT_EQ(net.stats().tx_bytes, 60u);
}

TEST_F(VirtioNetTest, TransmitGathersHeaderAndFrameFromSeveralDescriptors) {
  bring_up();
  const auto frame = make_frame(100, 9);
  std::vector<uint8_t> hdr(kHdr, 0);
  ASSERT_TRUE(mem.write(kBuf, hdr));
  ASSERT_TRUE(mem.write(kBuf + 0x100, std::span(frame).subspan(0, 30)));
  ASSERT_TRUE(mem.write(kBuf + 0x200, std::span(frame).subspan(30)));
  desc(VirtioNet::kTxQueue, 2, kBuf, kHdr, VirtQueue::kDescNext, 5);
  desc(VirtioNet::kTxQueue, 5, kBuf + 0x100, 30, VirtQueue::kDescNext, 1);
  desc(VirtioNet::kTxQueue, 1, kBuf + 0x200, 70, 0);
  publish(VirtioNet::kTxQueue, 2);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0], frame);
}

TEST_F(VirtioNetTest, OversizeShortAndOffloadFramesAreDroppedNotSent) {
  bring_up();
  const uint32_t max = net.max_frame_bytes();
  EXPECT_EQ(max, 1500u + 14 + 4);
  transmit(make_frame(max + 1));
  transmit(make_frame(13));                // shorter than an Ethernet header
  transmit(make_frame(60), VirtioNet::kHdrFlagNeedsCsum);
  transmit(make_frame(60), 0, 1);          // GSO TCPv4, never offered
  EXPECT_TRUE(sent.empty());
  EXPECT_EQ(net.stats().tx_dropped_malformed, 4u);
  // Every buffer went back to the guest, and the device still works.
  EXPECT_EQ(used_idx(VirtioNet::kTxQueue), 4);
  EXPECT_FALSE(needs_reset());
  transmit(make_frame(max));
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].size(), max);
}

TEST_F(VirtioNetTest, TransmitChainWithWritableBufferIsADeviceError) {
  bring_up();
  std::vector<uint8_t> bytes(kHdr + 60, 0);
  ASSERT_TRUE(mem.write(kBuf, bytes));
  desc(VirtioNet::kTxQueue, 0, kBuf, kHdr + 60, VirtQueue::kDescNext, 1);
  desc(VirtioNet::kTxQueue, 1, kBuf + 0x1000, 64, VirtQueue::kDescWrite);
  publish(VirtioNet::kTxQueue, 0);
  EXPECT_TRUE(sent.empty());
  EXPECT_TRUE(needs_reset());
  EXPECT_TRUE(rd(VirtioMmio::kInterruptStatus) & VirtioMmio::kInterruptConfigChange);
}

TEST_F(VirtioNetTest, TransmitDescriptorLoopAndWildBufferAreDeviceErrors) {
  bring_up();
  desc(VirtioNet::kTxQueue, 0, kBuf, 40, VirtQueue::kDescNext, 1);
  desc(VirtioNet::kTxQueue, 1, kBuf, 40, VirtQueue::kDescNext, 0);
  publish(VirtioNet::kTxQueue, 0);
  EXPECT_TRUE(needs_reset());
  wr(VirtioMmio::kStatus, 0);
  put<uint16_t>(avail_ring(1) + 2, 0);
  bring_up();
  desc(VirtioNet::kTxQueue, 0, kRam + kRamBytes - 16, 100, 0);
  publish(VirtioNet::kTxQueue, 0);
  EXPECT_TRUE(needs_reset());
  EXPECT_TRUE(sent.empty());
}

TEST_F(VirtioNetTest, FramesBeforeDriverOkGoNowhere) {
  negotiate();
  setup_queue(VirtioNet::kRxQueue);
  setup_queue(VirtioNet::kTxQueue);
  transmit(make_frame(60));  // notify before DRIVER_OK: ignored
  EXPECT_TRUE(sent.empty());
  EXPECT_EQ(used_idx(VirtioNet::kTxQueue), 0);
  post_rx(2048);
  EXPECT_FALSE(net.can_receive());
  EXPECT_FALSE(net.receive(make_frame(60)));
  EXPECT_EQ(net.stats().rx_dropped_not_ready, 1u);
  EXPECT_EQ(used_idx(VirtioNet::kRxQueue), 0);
  EXPECT_FALSE(irq.at(kIrq));
}

TEST_F(VirtioNetTest, ReceiveWritesHeaderAndFrameAndRaisesInterrupt) {
  bring_up();
  EXPECT_FALSE(net.can_receive());  // no buffer yet
  post_rx(2048);
  EXPECT_TRUE(net.can_receive());
  const auto frame = make_frame(98, 3);
  EXPECT_TRUE(net.receive(frame));
  EXPECT_EQ(used_idx(VirtioNet::kRxQueue), 1);
  EXPECT_EQ(used_len(VirtioNet::kRxQueue, 0), kHdr + 98);
  std::vector<uint8_t> got(kHdr + 98);
  ASSERT_TRUE(mem.read(kBuf + 0x8000, got));
  std::vector<uint8_t> hdr(kHdr, 0);
  hdr[10] = 1;  // num_buffers
  EXPECT_EQ(std::vector<uint8_t>(got.begin(), got.begin() + kHdr), hdr);
  EXPECT_EQ(std::vector<uint8_t>(got.begin() + kHdr, got.end()), frame);
  EXPECT_TRUE(irq.at(kIrq));
  EXPECT_EQ(net.stats().rx_frames, 1u);
  EXPECT_FALSE(net.can_receive());  // the only buffer is used
}

TEST_F(VirtioNetTest, ReceiveScattersOverSeveralBuffers) {
  bring_up();
  desc(VirtioNet::kRxQueue, 0, kBuf + 0x8000, kHdr, VirtQueue::kDescWrite | VirtQueue::kDescNext, 1);
  desc(VirtioNet::kRxQueue, 1, kBuf + 0x9000, 50, VirtQueue::kDescWrite | VirtQueue::kDescNext, 2);
  desc(VirtioNet::kRxQueue, 2, kBuf + 0xa000, 2000, VirtQueue::kDescWrite);
  publish(VirtioNet::kRxQueue, 0);
  const auto frame = make_frame(120, 5);
  ASSERT_TRUE(net.receive(frame));
  std::vector<uint8_t> a(50), b(70);
  ASSERT_TRUE(mem.read(kBuf + 0x9000, a));
  ASSERT_TRUE(mem.read(kBuf + 0xa000, b));
  a.insert(a.end(), b.begin(), b.end());
  EXPECT_EQ(a, frame);
  EXPECT_EQ(used_len(VirtioNet::kRxQueue, 0), kHdr + 120);
}

TEST_F(VirtioNetTest, ReceiveWithoutOrWithTooSmallABufferDropsTheFrame) {
  bring_up();
  EXPECT_FALSE(net.receive(make_frame(60)));
  EXPECT_EQ(net.stats().rx_dropped_no_buffer, 1u);
  post_rx(kHdr + 59);
  EXPECT_FALSE(net.receive(make_frame(60)));
  EXPECT_EQ(net.stats().rx_dropped_small_buffer, 1u);
  // The buffer went back empty; the device still works.
  EXPECT_EQ(used_idx(VirtioNet::kRxQueue), 1);
  EXPECT_EQ(used_len(VirtioNet::kRxQueue, 0), 0u);
  EXPECT_FALSE(needs_reset());
  post_rx(kHdr + 60);
  EXPECT_TRUE(net.receive(make_frame(60)));
}

TEST_F(VirtioNetTest, ReceiveChainWithReadableBufferIsADeviceError) {
  bring_up();
  desc(VirtioNet::kRxQueue, 0, kBuf + 0x8000, 2048, 0);
  publish(VirtioNet::kRxQueue, 0);
  EXPECT_FALSE(net.receive(make_frame(60)));
  EXPECT_TRUE(needs_reset());
  EXPECT_EQ(net.stats().rx_frames, 0u);
}

TEST_F(VirtioNetTest, InvalidHostFramesAreDropped) {
  bring_up();
  post_rx(16384);
  EXPECT_FALSE(net.receive(make_frame(10)));
  EXPECT_FALSE(net.receive(make_frame(net.max_frame_bytes() + 1)));
  EXPECT_EQ(net.stats().rx_dropped_invalid, 2u);
  EXPECT_EQ(used_idx(VirtioNet::kRxQueue), 0);
}

TEST_F(VirtioNetTest, LinkDownIsVisibleRaisesConfigInterruptAndStopsTraffic) {
  bring_up();
  const uint32_t generation = rd(VirtioMmio::kConfigGeneration);
  net.set_link(false);
  EXPECT_EQ(rd(VirtioMmio::kConfig + 6, 2), 0u);
  EXPECT_NE(rd(VirtioMmio::kConfigGeneration), generation);
  EXPECT_TRUE(rd(VirtioMmio::kInterruptStatus) & VirtioMmio::kInterruptConfigChange);
  EXPECT_TRUE(irq.at(kIrq));
  wr(VirtioMmio::kInterruptAck, VirtioMmio::kInterruptConfigChange);
  EXPECT_FALSE(irq.at(kIrq));

  transmit(make_frame(60));
  EXPECT_TRUE(sent.empty());
  EXPECT_EQ(net.stats().tx_dropped_link_down, 1u);
  post_rx(2048);
  EXPECT_FALSE(net.can_receive());
  EXPECT_FALSE(net.receive(make_frame(60)));
  EXPECT_EQ(net.stats().rx_dropped_link_down, 1u);

  net.set_link(true);
  EXPECT_EQ(rd(VirtioMmio::kConfig + 6, 2), VirtioNet::kStatusLinkUp);
  EXPECT_TRUE(rd(VirtioMmio::kInterruptStatus) & VirtioMmio::kInterruptConfigChange);
  EXPECT_TRUE(net.receive(make_frame(60)));
  transmit(make_frame(60));
  EXPECT_EQ(sent.size(), 1u);
}

TEST_F(VirtioNetTest, LinkChangeBeforeDriverOkRaisesNoInterrupt) {
  net.set_link(false);
  EXPECT_EQ(rd(VirtioMmio::kConfig + 6, 2), 0u);
  EXPECT_EQ(rd(VirtioMmio::kInterruptStatus), 0u);
  EXPECT_FALSE(irq.at(kIrq));
}

TEST_F(VirtioNetTest, SnapshotRoundTripKeepsLinkStatsAndQueueProgress) {
  bring_up();
  post_rx(2048);
  ASSERT_TRUE(net.receive(make_frame(60)));
  transmit(make_frame(61));
  transmit(make_frame(5000));  // dropped, counted
  net.set_link(false);
  const auto bytes = testing::save_bytes(mmio);

  LevelRecorder irq2;
  VirtioNet copy_net(net.config(), nullptr);
  VirtioMmio copy(&copy_net, mem, IrqLine{&irq2, kIrq});
  testing::restore_bytes(copy, bytes);
  EXPECT_EQ(testing::save_bytes(copy), bytes);
  EXPECT_FALSE(copy_net.link_up());
  EXPECT_EQ(copy_net.stats().rx_frames, 1u);
  EXPECT_EQ(copy_net.stats().tx_frames, 1u);
  EXPECT_EQ(copy_net.stats().tx_dropped_malformed, 1u);
  EXPECT_TRUE(irq2.at(kIrq));

  // The state differs with the link: the machine state hash sees it.
  copy_net.set_link(true);
  EXPECT_NE(testing::save_bytes(copy), bytes);

  // Another MAC, another MTU, or no NIC in this slot: refused.
  NicConfig other = net.config();
  other.mac[5] ^= 1;
  VirtioNet other_net(other, nullptr);
  VirtioMmio other_mmio(&other_net, mem, IrqLine{&irq2, kIrq});
  EXPECT_THROW(testing::restore_bytes(other_mmio, bytes), StateError);
  NicConfig jumbo = net.config();
  jumbo.mtu = 9000;
  VirtioNet jumbo_net(jumbo, nullptr);
  VirtioMmio jumbo_mmio(&jumbo_net, mem, IrqLine{&irq2, kIrq});
  EXPECT_THROW(testing::restore_bytes(jumbo_mmio, bytes), StateError);
  VirtioMmio empty(nullptr, mem, IrqLine{&irq2, kIrq});
  EXPECT_THROW(testing::restore_bytes(empty, bytes), StateError);
}

// Random rings on both queues (fixed seed): nothing crashes or hangs, and every frame the
// host is handed is within the MTU's bounds and came out of a clean transmit chain.
TEST_F(VirtioNetTest, RandomRingsNeverHandTheHostAnInvalidFrame) {
  std::mt19937_64 rng(777);
  int resets = 0;
  uint64_t delivered = 0;
  for (int round = 0; round < 400; ++round) {
    wr(VirtioMmio::kStatus, 0);
    for (unsigned q = 0; q < 2; ++q) {
      std::vector<uint8_t> noise(0x3000);
      for (auto& b : noise) b = static_cast<uint8_t>(rng() % 4 == 0 ? rng() : 0);
      for (unsigned i = 0; i < kQueueSize; ++i) {
        const bool wild = rng() % 8 == 0;
        const uint64_t addr = wild ? rng() : kBuf + rng() % 0x8000;
        const uint32_t len = static_cast<uint32_t>(wild ? rng() : rng() % 3000);
        const uint16_t flags = static_cast<uint16_t>(wild ? rng() : rng() % 4);
        const uint16_t next = static_cast<uint16_t>(rng() % (kQueueSize + 1));
        std::memcpy(noise.data() + 16 * i, &addr, 8);
        std::memcpy(noise.data() + 16 * i + 8, &len, 4);
        std::memcpy(noise.data() + 16 * i + 12, &flags, 2);
        std::memcpy(noise.data() + 16 * i + 14, &next, 2);
      }
      for (unsigned i = 0; i < kQueueSize; ++i) {
        const uint16_t head = static_cast<uint16_t>(rng() % (kQueueSize + 1));
        std::memcpy(noise.data() + 0x1000 + 4 + 2 * i, &head, 2);
      }
      const uint16_t avail_idx = static_cast<uint16_t>(rng() % (2 * kQueueSize));
      std::memcpy(noise.data() + 0x1000 + 2, &avail_idx, 2);
      std::memset(noise.data() + 0x2000, 0, 8);
      ASSERT_TRUE(mem.write(kRings[q], noise));
    }
    bring_up();
    wr(VirtioMmio::kQueueNotify, VirtioNet::kTxQueue);
    for (int i = 0; i < 4; ++i) delivered += net.receive(make_frame(60 + rng() % 2000));
    if (needs_reset()) ++resets;
    EXPECT_LE(used_idx(VirtioNet::kTxQueue), kQueueSize);
    EXPECT_LE(used_idx(VirtioNet::kRxQueue), kQueueSize);
  }
  for (const auto& f : sent) {
    EXPECT_GE(f.size(), VirtioNet::kEthHeaderBytes);
    EXPECT_LE(f.size(), net.max_frame_bytes());
  }
  EXPECT_GT(resets, 0);
  EXPECT_GT(sent.size() + delivered, 0u);
}

// The machine: the NIC sits in its board slot, is absent without a NicConfig, and its
// transmit path reaches World::output (the Net channel) with the icount.
struct NullWorld : World {
  std::vector<std::pair<uint64_t, size_t>> frames;
  uint64_t next_service_icount(uint64_t) override { return UINT64_MAX; }
  void service(Machine&) override {}
  bool idle(Machine&, uint64_t) override { return false; }
  void output(OutputChannel channel, uint64_t icount, std::span<const uint8_t> f) override {
    if (channel == OutputChannel::Net) frames.emplace_back(icount, f.size());
  }
  void entropy(uint64_t, std::span<uint8_t> out) override { std::memset(out.data(), 0, out.size()); }
};

TEST(VirtioNetMachine, NicSitsInItsBoardSlotOnlyWhenConfigured) {
  const BoardRegion& first = board_region(DeviceKind::VirtioMmio);
  const uint64_t slot = first.base + kVirtioSlotNet * kVirtioStride;
  NullWorld world;
  MachineConfig plain;
  plain.mem_bytes = 16 << 20;
  Machine without(plain, world);
  uint64_t id = 99;
  ASSERT_TRUE(without.bus().read(slot + VirtioMmio::kDeviceId, 4, id));
  EXPECT_EQ(id, 0u);
  EXPECT_FALSE(without.has_nic());
  EXPECT_FALSE(without.net_input(make_frame(60)));

  MachineConfig with = plain;
  with.nic = NicConfig{};
  Machine machine(with, world);
  ASSERT_TRUE(machine.bus().read(slot + VirtioMmio::kDeviceId, 4, id));
  EXPECT_EQ(id, VirtioNet::kDeviceId);
  EXPECT_TRUE(machine.has_nic());
  const uint64_t up = machine.state_hash_uncached();
  machine.net_set_link(false);
  EXPECT_NE(machine.state_hash_uncached(), up);
  // A snapshot with a NIC does not restore into a machine without one.
  std::stringstream snap;
  machine.save(snap);
  EXPECT_THROW(without.restore(snap), StateError);
}

}  // namespace
}  // namespace tandem::vmm
