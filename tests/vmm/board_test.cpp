// The board: every kBoardMap entry is mapped at its address with the right device, gaps
// fault, and interrupt wiring runs device → PLIC → hart line (and CLINT → hart).
#include <gtest/gtest.h>

#include "tests/vmm/device_test_support.h"
#include "vmm/board.h"
#include "vmm/devices/clint.h"
#include "vmm/devices/plic.h"
#include "vmm/devices/uart16550.h"
#include "vmm/devices/virtio_mmio.h"

namespace tandem::vmm {
namespace {

using testing::LevelRecorder;

class BoardTest : public ::testing::Test {
 protected:
  BoardTest() : mem(kDramBase, 1 << 20), bus(mem), board(bus, clock, wiring()) {}
  BoardWiring wiring() {
    BoardWiring w;
    w.hart_irqs = &hart;
    w.now_icount = [] { return uint64_t{0}; };
    w.console_output = [this](uint8_t b) { console.push_back(static_cast<char>(b)); };
    return w;
  }
  uint64_t rd(uint64_t addr, unsigned size = 4) {
    uint64_t v = 0;
    EXPECT_TRUE(bus.read(addr, size, v)) << std::hex << addr;
    return v;
  }
  void wr(uint64_t addr, uint64_t v, unsigned size = 4) { EXPECT_TRUE(bus.write(addr, size, v)) << std::hex << addr; }

  LevelRecorder hart;
  std::string console;
  VirtualClock clock;
  GuestMemory mem;
  Bus bus;
  Board board;
};

TEST_F(BoardTest, EveryTableEntryIsMappedWithItsDevice) {
  for (const BoardRegion& r : kBoardMap) {
    uint64_t offset = 1;
    Device* first = bus.find(r.base, 1, offset);
    ASSERT_NE(first, nullptr) << r.name;
    EXPECT_EQ(offset, 0u);
    EXPECT_EQ(bus.find(r.base + r.size - 1, 1, offset), first) << r.name;  // same device to the end
    EXPECT_NE(bus.find(r.base + r.size, 1, offset), first) << r.name;
  }
  uint64_t offset;
  EXPECT_EQ(std::string(bus.find(0x1000'0000, 1, offset)->name()), "uart16550");
  EXPECT_EQ(std::string(bus.find(0x0c00'0000, 4, offset)->name()), "plic");
}

TEST_F(BoardTest, GapsBetweenDevicesFault) {
  uint64_t v;
  EXPECT_FALSE(bus.read(0x0, 4, v));
  EXPECT_FALSE(bus.read(0x0010'1000, 4, v));  // just past the finisher
  EXPECT_FALSE(bus.write(0x1000'9000, 4, 0));  // past the last virtio slot
}

TEST_F(BoardTest, WithoutDiskOnlyTheEntropySlotHoldsADevice) {
  for (unsigned i = 0; i < kVirtioSlots; ++i) {
    const uint64_t base = kVirtioBase + i * kVirtioStride;
    EXPECT_EQ(rd(base + VirtioMmio::kMagicValue), VirtioMmio::kMagic);
    // Slot 0 is the disk's (empty here), slot 1 the virtio-rng (id 4), the rest empty.
    EXPECT_EQ(rd(base + VirtioMmio::kDeviceId), i == 1 ? 4u : 0u) << "slot " << i;
  }
  EXPECT_EQ(board.blk(), nullptr);
}

TEST_F(BoardTest, UartInterruptReachesTheHartThroughThePlic) {
  const uint64_t plic = board_region(DeviceKind::Plic).base;
  wr(plic + Plic::kPriorityBase + 4 * kUartIrq, 1);
  wr(plic + Plic::kEnableBase, 1u << kUartIrq);
  wr(0x1000'0000 + Uart16550::kIerDlm, Uart16550::kIerRxAvailable, 1);
  EXPECT_FALSE(hart.at(11));
  const uint8_t in[] = {'k'};
  board.uart().push_input(in);
  EXPECT_TRUE(hart.at(11));  // MEIP
  EXPECT_EQ(rd(plic + Plic::kContextBase + 4), kUartIrq);  // claim
  EXPECT_EQ(rd(0x1000'0000, 1), 'k');
  wr(plic + Plic::kContextBase + 4, kUartIrq);  // complete
  EXPECT_FALSE(hart.at(11));
}

TEST_F(BoardTest, UartOutputAndClintLinesAreWired) {
  wr(0x1000'0000, 'z', 1);
  EXPECT_EQ(console, "z");
  const uint64_t clint = board_region(DeviceKind::Clint).base;
  wr(clint + Clint::kMsip, 1);
  EXPECT_TRUE(hart.at(3));  // MSIP
  wr(clint + Clint::kMtimecmp, 0, 8);
  EXPECT_TRUE(hart.at(7));  // MTIP: mtime 0 >= mtimecmp 0
  EXPECT_TRUE(bus.stop_requested());  // the run loop is told to recompute its timer stop
}

TEST_F(BoardTest, SaveRestoreCoversEveryDevice) {
  wr(0x1000'0000 + Uart16550::kScr, 0x42, 1);
  const auto bytes = testing::save_bytes(board);
  LevelRecorder hart2;
  GuestMemory mem2(kDramBase, 1 << 20);
  Bus bus2(mem2);
  BoardWiring w;
  w.hart_irqs = &hart2;
  w.now_icount = [] { return uint64_t{0}; };
  Board copy(bus2, clock, w);
  testing::restore_bytes(copy, bytes);
  uint64_t v;
  ASSERT_TRUE(bus2.read(0x1000'0000 + Uart16550::kScr, 1, v));
  EXPECT_EQ(v, 0x42u);
  EXPECT_EQ(testing::save_bytes(copy), bytes);
}

}  // namespace
}  // namespace tandem::vmm
