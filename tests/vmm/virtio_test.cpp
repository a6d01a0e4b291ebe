// virtio-mmio transport + virtio-blk: register protocol, feature negotiation, queue
// validation (Firecracker-style) and block requests against a temporary file. Every
// hostile setup must end in DEVICE_NEEDS_RESET or an error status, never a crash or hang.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "tests/vmm/device_test_support.h"
#include "vmm/devices/disk_image.h"
#include "vmm/devices/virtio_blk.h"
#include "vmm/devices/virtio_mmio.h"

namespace tandem::vmm {
namespace {

using testing::LevelRecorder;

constexpr uint64_t kRam = 0x8000'0000;
constexpr uint64_t kRamBytes = 1 << 20;
constexpr unsigned kIrq = 1;
// Guest layout used by the tests.
constexpr uint64_t kDesc = kRam + 0x1000, kAvail = kRam + 0x2000, kUsed = kRam + 0x3000;
constexpr uint64_t kHeader = kRam + 0x4000, kData = kRam + 0x5000, kStatus = kRam + 0x9000;
constexpr uint16_t kQueueSize = 8;

class TempDisk {
 public:
  explicit TempDisk(size_t bytes) {
    path_ = std::filesystem::temp_directory_path() / ("tandem_virtio_test_" + std::to_string(::getpid()) + "_" +
                                                     std::to_string(counter_++) + ".img");
    std::vector<uint8_t> data(bytes);
    for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<uint8_t>(i / 512 + i % 7);
    std::ofstream(path_, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), data.size());
  }
  ~TempDisk() { std::filesystem::remove(path_); }
  std::string path() const { return path_.string(); }
  std::vector<uint8_t> contents() const {
    std::ifstream in(path_, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

class VirtioBlkTest : public ::testing::Test {
 protected:
  VirtioBlkTest() : mem(kRam, kRamBytes), disk_file(64 * 512), disk(disk_file.path()), blk(disk),
                    mmio(&blk, mem, IrqLine{&irq, kIrq}) {}

  uint32_t rd(uint64_t off) {
    uint64_t v = 0;
    EXPECT_TRUE(mmio.read(off, 4, v));
    return static_cast<uint32_t>(v);
  }
  void wr(uint64_t off, uint32_t v) { EXPECT_TRUE(mmio.write(off, 4, v)); }

  void negotiate() {
    wr(VirtioMmio::kStatus, VirtioMmio::kStatusAcknowledge | VirtioMmio::kStatusDriver);
    wr(VirtioMmio::kDriverFeaturesSel, 1);
    wr(VirtioMmio::kDriverFeatures, 1);  // VERSION_1
    wr(VirtioMmio::kStatus, VirtioMmio::kStatusAcknowledge | VirtioMmio::kStatusDriver |
                                VirtioMmio::kStatusFeaturesOk);
  }
  void setup_queue(uint32_t size = kQueueSize, uint64_t desc = kDesc, uint64_t avail = kAvail,
                   uint64_t used = kUsed) {
    wr(VirtioMmio::kQueueSel, 0);
    wr(VirtioMmio::kQueueNum, size);
    wr(VirtioMmio::kQueueDescLow, static_cast<uint32_t>(desc));
    wr(VirtioMmio::kQueueDescHigh, static_cast<uint32_t>(desc >> 32));
    wr(VirtioMmio::kQueueDriverLow, static_cast<uint32_t>(avail));
    wr(VirtioMmio::kQueueDriverHigh, static_cast<uint32_t>(avail >> 32));
    wr(VirtioMmio::kQueueDeviceLow, static_cast<uint32_t>(used));
    wr(VirtioMmio::kQueueDeviceHigh, static_cast<uint32_t>(used >> 32));
    wr(VirtioMmio::kQueueReady, 1);
  }
  void driver_ok() {
    wr(VirtioMmio::kStatus, rd(VirtioMmio::kStatus) | VirtioMmio::kStatusDriverOk);
  }
  void bring_up() {
    negotiate();
    setup_queue();
    driver_ok();
    ASSERT_EQ(rd(VirtioMmio::kQueueReady), 1u);
  }

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
  void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    struct {
      uint64_t addr;
      uint32_t len;
      uint16_t flags, next;
    } d{addr, len, flags, next};
    put(kDesc + 16 * i, d);
  }
  // Publishes chain `head` as the next available entry and notifies.
  void submit(uint16_t head) {
    const uint16_t idx = get<uint16_t>(kAvail + 2);
    put<uint16_t>(kAvail + 4 + 2 * (idx % kQueueSize), head);
    put<uint16_t>(kAvail + 2, static_cast<uint16_t>(idx + 1));
    wr(VirtioMmio::kQueueNotify, 0);
  }
  // A standard 3-descriptor request: header, data, status.
  void request(uint32_t type, uint64_t sector, uint32_t data_len, bool device_writes) {
    struct {
      uint32_t type, reserved;
      uint64_t sector;
    } h{type, 0, sector};
    put(kHeader, h);
    put<uint8_t>(kStatus, 0xee);
    desc(0, kHeader, 16, VirtQueue::kDescNext, 1);
    desc(1, kData, data_len, VirtQueue::kDescNext | (device_writes ? VirtQueue::kDescWrite : 0), 2);
    desc(2, kStatus, 1, VirtQueue::kDescWrite, 0);
    submit(0);
  }
  bool needs_reset() { return rd(VirtioMmio::kStatus) & VirtioMmio::kStatusNeedsReset; }

  GuestMemory mem;
  LevelRecorder irq;
  TempDisk disk_file;
  DiskImage disk;
  VirtioBlk blk;
  VirtioMmio mmio;
};

TEST_F(VirtioBlkTest, IdentityRegisters) {
  EXPECT_EQ(rd(VirtioMmio::kMagicValue), 0x74726976u);
  EXPECT_EQ(rd(VirtioMmio::kVersion), 2u);
  EXPECT_EQ(rd(VirtioMmio::kDeviceId), 2u);
  EXPECT_EQ(rd(VirtioMmio::kVendor), 0x554d4551u);
  wr(VirtioMmio::kDeviceFeaturesSel, 1);
  EXPECT_EQ(rd(VirtioMmio::kDeviceFeatures) & 1, 1u);  // VERSION_1
  wr(VirtioMmio::kDeviceFeaturesSel, 0);
  EXPECT_TRUE(rd(VirtioMmio::kDeviceFeatures) & (1u << 9));  // FLUSH
  EXPECT_EQ(rd(VirtioMmio::kQueueNumMax), 256u);
  EXPECT_EQ(rd(VirtioMmio::kConfig), 64u);  // capacity in sectors, low word
  EXPECT_EQ(rd(VirtioMmio::kConfig + 4), 0u);
  uint64_t v;
  EXPECT_FALSE(mmio.read(VirtioMmio::kStatus, 2, v));  // registers are 32-bit
}

TEST(VirtioEmptySlot, ReportsDeviceIdZeroAndIgnoresEverything) {
  GuestMemory mem(kRam, kRamBytes);
  LevelRecorder irq;
  VirtioMmio empty(nullptr, mem, IrqLine{&irq, kIrq});
  uint64_t v;
  ASSERT_TRUE(empty.read(VirtioMmio::kMagicValue, 4, v));
  EXPECT_EQ(v, 0x74726976u);
  ASSERT_TRUE(empty.read(VirtioMmio::kDeviceId, 4, v));
  EXPECT_EQ(v, 0u);
  EXPECT_TRUE(empty.write(VirtioMmio::kQueueNotify, 4, 0));
  EXPECT_TRUE(empty.write(VirtioMmio::kQueueReady, 4, 1));
  ASSERT_TRUE(empty.read(VirtioMmio::kQueueNumMax, 4, v));
  EXPECT_EQ(v, 0u);
  EXPECT_FALSE(irq.at(kIrq));
}

TEST_F(VirtioBlkTest, FeaturesOkRefusedWithoutVersion1OrWithUnofferedBits) {
  wr(VirtioMmio::kStatus, VirtioMmio::kStatusAcknowledge | VirtioMmio::kStatusDriver);
  wr(VirtioMmio::kStatus, VirtioMmio::kStatusAcknowledge | VirtioMmio::kStatusDriver | VirtioMmio::kStatusFeaturesOk);
  EXPECT_FALSE(rd(VirtioMmio::kStatus) & VirtioMmio::kStatusFeaturesOk);  // legacy driver
  wr(VirtioMmio::kStatus, 0);
  wr(VirtioMmio::kDriverFeaturesSel, 1);
  wr(VirtioMmio::kDriverFeatures, 1 | 2);  // VERSION_1 + bit 33, never offered
  wr(VirtioMmio::kStatus, VirtioMmio::kStatusFeaturesOk);
  EXPECT_FALSE(rd(VirtioMmio::kStatus) & VirtioMmio::kStatusFeaturesOk);
  wr(VirtioMmio::kStatus, 0);
  negotiate();
  EXPECT_TRUE(rd(VirtioMmio::kStatus) & VirtioMmio::kStatusFeaturesOk);
}

TEST_F(VirtioBlkTest, ReadRequestCopiesSectorsAndRaisesInterrupt) {
  bring_up();
  request(VirtioBlk::kTypeIn, 3, 1024, true);
  EXPECT_EQ(get<uint8_t>(kStatus), VirtioBlk::kStatusOk);
  const auto file = disk_file.contents();
  std::vector<uint8_t> got(1024);
  ASSERT_TRUE(mem.read(kData, got));
  EXPECT_TRUE(std::equal(got.begin(), got.end(), file.begin() + 3 * 512));
  EXPECT_EQ(get<uint16_t>(kUsed + 2), 1u);            // used idx
  EXPECT_EQ(get<uint32_t>(kUsed + 4), 0u);            // used id = head
  EXPECT_EQ(get<uint32_t>(kUsed + 8), 1024u + 1u);    // data + status
  EXPECT_TRUE(irq.at(kIrq));
  EXPECT_EQ(rd(VirtioMmio::kInterruptStatus), VirtioMmio::kInterruptUsedBuffer);
  wr(VirtioMmio::kInterruptAck, VirtioMmio::kInterruptUsedBuffer);
  EXPECT_FALSE(irq.at(kIrq));
}

TEST_F(VirtioBlkTest, WriteRequestReachesFileAndChangesSnapshot) {
  bring_up();
  const auto before = testing::save_bytes(mmio);
  std::vector<uint8_t> payload(512, 0xab);
  ASSERT_TRUE(mem.write(kData, payload));
  request(VirtioBlk::kTypeOut, 10, 512, false);
  EXPECT_EQ(get<uint8_t>(kStatus), VirtioBlk::kStatusOk);
  const auto file = disk_file.contents();
  EXPECT_TRUE(std::all_of(file.begin() + 10 * 512, file.begin() + 11 * 512, [](uint8_t b) { return b == 0xab; }));
  EXPECT_NE(testing::save_bytes(mmio), before);  // the disk's write state is in the snapshot
}

TEST_F(VirtioBlkTest, OutOfRangeAndRaggedRequestsGetIoErr) {
  bring_up();
  request(VirtioBlk::kTypeIn, 63, 1024, true);  // runs past sector 63
  EXPECT_EQ(get<uint8_t>(kStatus), VirtioBlk::kStatusIoErr);
  request(VirtioBlk::kTypeIn, UINT64_MAX, 512, true);
  EXPECT_EQ(get<uint8_t>(kStatus), VirtioBlk::kStatusIoErr);
  request(VirtioBlk::kTypeOut, 0, 100, false);  // not a whole sector
  EXPECT_EQ(get<uint8_t>(kStatus), VirtioBlk::kStatusIoErr);
  EXPECT_FALSE(needs_reset());
}

TEST_F(VirtioBlkTest, FlushGetIdAndUnsupported) {
  bring_up();
  request(VirtioBlk::kTypeFlush, 0, 0, false);
  EXPECT_EQ(get<uint8_t>(kStatus), VirtioBlk::kStatusOk);
  request(VirtioBlk::kTypeGetId, 0, 20, true);
  EXPECT_EQ(get<uint8_t>(kStatus), VirtioBlk::kStatusOk);
  char id[21] = {};
  ASSERT_TRUE(mem.read(kData, {reinterpret_cast<uint8_t*>(id), 20}));
  EXPECT_STREQ(id, "tandem-virtio-blk");
  request(77, 0, 512, true);
  EXPECT_EQ(get<uint8_t>(kStatus), VirtioBlk::kStatusUnsupported);
}

TEST_F(VirtioBlkTest, QueueSizeNotPowerOfTwoIsRefused) {
  negotiate();
  setup_queue(6);
  EXPECT_EQ(rd(VirtioMmio::kQueueReady), 0u);
  EXPECT_TRUE(needs_reset());
  EXPECT_TRUE(irq.at(kIrq));  // configuration-change interrupt
  EXPECT_EQ(rd(VirtioMmio::kInterruptStatus) & VirtioMmio::kInterruptConfigChange,
            VirtioMmio::kInterruptConfigChange);
}

TEST_F(VirtioBlkTest, QueueLargerThanMaxOrZeroIsRefused) {
  negotiate();
  setup_queue(512);
  EXPECT_TRUE(needs_reset());
  wr(VirtioMmio::kStatus, 0);  // reset clears NEEDS_RESET
  EXPECT_FALSE(needs_reset());
  negotiate();
  setup_queue(0);
  EXPECT_TRUE(needs_reset());
}

TEST_F(VirtioBlkTest, RingsOutsideRamAreRefused) {
  negotiate();
  setup_queue(kQueueSize, 0x1000);  // descriptor table below RAM
  EXPECT_TRUE(needs_reset());
  wr(VirtioMmio::kStatus, 0);
  negotiate();
  setup_queue(kQueueSize, kDesc, kRam + kRamBytes - 4);  // avail ring runs off the end
  EXPECT_TRUE(needs_reset());
  wr(VirtioMmio::kStatus, 0);
  negotiate();
  setup_queue(kQueueSize, kDesc, kAvail, UINT64_MAX - 8);  // wraps around
  EXPECT_TRUE(needs_reset());
}

TEST_F(VirtioBlkTest, DescriptorLoopIsCaughtNotFollowed) {
  bring_up();
  put<uint64_t>(kHeader, 0);
  desc(0, kHeader, 16, VirtQueue::kDescNext, 1);
  desc(1, kData, 512, VirtQueue::kDescNext | VirtQueue::kDescWrite, 0);  // back to 0
  submit(0);
  EXPECT_TRUE(needs_reset());
  EXPECT_EQ(get<uint16_t>(kUsed + 2), 0u);  // nothing completed
}

TEST_F(VirtioBlkTest, ChainLongerThanQueueIsRefused) {
  bring_up();
  // 8 descriptors linked 0→1→…→7 and 7 back into the chain at 1: longer than the queue.
  for (uint16_t i = 0; i < kQueueSize; ++i) {
    desc(i, kData, 16, VirtQueue::kDescNext, static_cast<uint16_t>(i + 1 < kQueueSize ? i + 1 : 1));
  }
  submit(0);
  EXPECT_TRUE(needs_reset());
}

TEST_F(VirtioBlkTest, BufferOutsideRamIsRefused) {
  bring_up();
  put<uint64_t>(kHeader, 0);
  desc(0, kHeader, 16, VirtQueue::kDescNext, 1);
  desc(1, kRam + kRamBytes - 256, 512, VirtQueue::kDescNext | VirtQueue::kDescWrite, 2);
  desc(2, kStatus, 1, VirtQueue::kDescWrite, 0);
  submit(0);
  EXPECT_TRUE(needs_reset());
}

TEST_F(VirtioBlkTest, DescriptorIndexPastQueueIsRefused) {
  bring_up();
  desc(0, kHeader, 16, VirtQueue::kDescNext, 200);
  submit(0);
  EXPECT_TRUE(needs_reset());
  wr(VirtioMmio::kStatus, 0);
  bring_up();
  put<uint16_t>(kAvail + 4, 99);  // avail ring names a descriptor past the queue
  put<uint16_t>(kAvail + 2, 1);
  wr(VirtioMmio::kQueueNotify, 0);
  EXPECT_TRUE(needs_reset());
}

TEST_F(VirtioBlkTest, AvailIndexTooFarAheadIsRefused) {
  bring_up();
  put<uint16_t>(kAvail + 2, 1000);
  wr(VirtioMmio::kQueueNotify, 0);
  EXPECT_TRUE(needs_reset());
}

TEST_F(VirtioBlkTest, IndirectDescriptorsAndMissingStatusAreRefused) {
  bring_up();
  desc(0, kHeader, 16, VirtQueue::kDescIndirect, 0);
  submit(0);
  EXPECT_TRUE(needs_reset());
  wr(VirtioMmio::kStatus, 0);
  bring_up();
  put<uint64_t>(kHeader, 0);
  desc(0, kHeader, 16, 0, 0);  // no writable status byte at all
  submit(0);
  EXPECT_TRUE(needs_reset());
}

TEST_F(VirtioBlkTest, NotifyIsIgnoredAfterNeedsResetUntilReset) {
  bring_up();
  put<uint16_t>(kAvail + 2, 1000);
  wr(VirtioMmio::kQueueNotify, 0);
  ASSERT_TRUE(needs_reset());
  put<uint16_t>(kAvail + 2, 0);
  request(VirtioBlk::kTypeIn, 0, 512, true);
  EXPECT_EQ(get<uint8_t>(kStatus), 0xee);  // untouched: the device is stopped
  wr(VirtioMmio::kStatus, 0);
  put<uint16_t>(kAvail + 2, 0);
  bring_up();
  request(VirtioBlk::kTypeIn, 0, 512, true);
  EXPECT_EQ(get<uint8_t>(kStatus), VirtioBlk::kStatusOk);
}

TEST_F(VirtioBlkTest, SaveRestoreKeepsQueueProgress) {
  bring_up();
  request(VirtioBlk::kTypeIn, 1, 512, true);
  const auto bytes = testing::save_bytes(mmio);
  LevelRecorder irq2;
  VirtioMmio copy(&blk, mem, IrqLine{&irq2, kIrq});
  testing::restore_bytes(copy, bytes);
  EXPECT_EQ(testing::save_bytes(copy), bytes);
  EXPECT_TRUE(irq2.at(kIrq));  // the pending used-buffer interrupt is re-driven

  // A snapshot for a different device in this slot is refused.
  GuestMemory mem2(kRam, kRamBytes);
  VirtioMmio empty(nullptr, mem2, IrqLine{&irq2, kIrq});
  EXPECT_THROW(testing::restore_bytes(empty, bytes), StateError);
}

TEST_F(VirtioBlkTest, RestoreRefusesAnotherDiskImage) {
  const auto bytes = testing::save_bytes(mmio);
  TempDisk other_file(32 * 512);
  DiskImage other(other_file.path());
  VirtioBlk other_blk(other);
  VirtioMmio other_mmio(&other_blk, mem, IrqLine{&irq, kIrq});
  EXPECT_THROW(testing::restore_bytes(other_mmio, bytes), StateError);
}

// Random descriptor tables and rings (fixed seed): every notify ends, completes at most a
// queue's worth of requests, and either leaves the device working or flags NEEDS_RESET.
TEST_F(VirtioBlkTest, RandomRingsNeverCrashOrHang) {
  std::mt19937_64 rng(12345);
  int resets = 0, completions = 0;
  for (int round = 0; round < 300; ++round) {
    wr(VirtioMmio::kStatus, 0);
    std::vector<uint8_t> noise(0x9000 - 0x1000);
    for (auto& b : noise) b = static_cast<uint8_t>(rng());
    // Mostly plausible descriptors (so chains get past the first checks), some wild ones.
    for (unsigned i = 0; i < kQueueSize; ++i) {
      const bool wild = rng() % 8 == 0;
      const uint64_t addr = wild ? rng() : kRam + 0x4000 + rng() % 0x5000;
      const uint32_t len = static_cast<uint32_t>(wild ? rng() : rng() % 2048);
      const uint16_t flags = static_cast<uint16_t>(wild ? rng() : rng() % 4);
      const uint16_t next = static_cast<uint16_t>(rng() % (kQueueSize + 1));
      std::memcpy(noise.data() + 16 * i, &addr, 8);
      std::memcpy(noise.data() + 16 * i + 8, &len, 4);
      std::memcpy(noise.data() + 16 * i + 12, &flags, 2);
      std::memcpy(noise.data() + 16 * i + 14, &next, 2);
    }
    for (unsigned i = 0; i < kQueueSize; ++i) {
      const uint16_t head = static_cast<uint16_t>(rng() % (kQueueSize + 1));
      std::memcpy(noise.data() + (kAvail - kDesc) + 4 + 2 * i, &head, 2);
    }
    ASSERT_TRUE(mem.write(kRam + 0x1000, noise));
    put<uint16_t>(kAvail + 2, static_cast<uint16_t>(rng() % (2 * kQueueSize)));
    put<uint16_t>(kUsed + 2, 0);  // as a driver initialises it
    bring_up();
    wr(VirtioMmio::kQueueNotify, 0);
    const uint16_t used = get<uint16_t>(kUsed + 2);
    if (needs_reset()) {
      ++resets;
    } else {
      completions += used;
    }
    // The device writes its own used index; one notify completes at most a queue's worth.
    EXPECT_LE(used, kQueueSize);
  }
  EXPECT_GT(resets, 0);
  EXPECT_GT(completions, 0);
}

TEST(DiskImage, MissingFileIsAClearError) {
  try {
    DiskImage d("/nonexistent/disk.img");
    FAIL() << "opened a missing disk";
  } catch (const DiskError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/disk.img"), std::string::npos);
  }
}

}  // namespace
}  // namespace tandem::vmm
