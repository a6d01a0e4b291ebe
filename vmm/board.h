#pragma once
// The board: QEMU `virt` memory map as one constexpr table. The bus registration
// (Board) and the device-tree builder (fdt.cpp) both read kBoardMap, so the two can never
// disagree about where a device lives or which PLIC source it drives.
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/bus.h"
#include "vmm/clock.h"
#include "vmm/device.h"
#include "vmm/devices/virtio_net.h"

namespace tandem::vmm {

inline constexpr uint64_t kDramBase = 0x8000'0000;
inline constexpr uint64_t kDefaultMemBytes = uint64_t{128} << 20;

enum class DeviceKind : uint8_t { TestFinisher, Clint, Plic, Uart, VirtioMmio };

struct BoardRegion {
  std::string_view name;  // device-tree node name (without unit address)
  DeviceKind kind;
  uint64_t base;
  uint64_t size;
  unsigned irq;  // PLIC source, 0 = none
};

inline constexpr unsigned kVirtioSlots = 8;
inline constexpr uint64_t kVirtioBase = 0x1000'1000;
inline constexpr uint64_t kVirtioStride = 0x1000;
inline constexpr unsigned kVirtioFirstIrq = 1;
inline constexpr unsigned kUartIrq = 10;

inline constexpr std::array<BoardRegion, 4 + kVirtioSlots> kBoardMap = {{
    {"test", DeviceKind::TestFinisher, 0x0010'0000, 0x1000, 0},
    {"clint", DeviceKind::Clint, 0x0200'0000, 0x10000, 0},
    {"plic", DeviceKind::Plic, 0x0c00'0000, 0x600000, 0},
    {"serial", DeviceKind::Uart, 0x1000'0000, 0x100, kUartIrq},
    {"virtio_mmio", DeviceKind::VirtioMmio, kVirtioBase + 0 * kVirtioStride, kVirtioStride, kVirtioFirstIrq + 0},
    {"virtio_mmio", DeviceKind::VirtioMmio, kVirtioBase + 1 * kVirtioStride, kVirtioStride, kVirtioFirstIrq + 1},
    {"virtio_mmio", DeviceKind::VirtioMmio, kVirtioBase + 2 * kVirtioStride, kVirtioStride, kVirtioFirstIrq + 2},
    {"virtio_mmio", DeviceKind::VirtioMmio, kVirtioBase + 3 * kVirtioStride, kVirtioStride, kVirtioFirstIrq + 3},
    {"virtio_mmio", DeviceKind::VirtioMmio, kVirtioBase + 4 * kVirtioStride, kVirtioStride, kVirtioFirstIrq + 4},
    {"virtio_mmio", DeviceKind::VirtioMmio, kVirtioBase + 5 * kVirtioStride, kVirtioStride, kVirtioFirstIrq + 5},
    {"virtio_mmio", DeviceKind::VirtioMmio, kVirtioBase + 6 * kVirtioStride, kVirtioStride, kVirtioFirstIrq + 6},
    {"virtio_mmio", DeviceKind::VirtioMmio, kVirtioBase + 7 * kVirtioStride, kVirtioStride, kVirtioFirstIrq + 7},
}};

// The one entry of a given kind (the first, for virtio).
constexpr const BoardRegion& board_region(DeviceKind kind) {
  for (const auto& r : kBoardMap) {
    if (r.kind == kind) return r;
  }
  return kBoardMap[0];  // unreachable for kinds in the table
}

// PLIC geometry as on QEMU virt (riscv,ndev = 96): sources 1..96, context 0 = hart0 M-mode,
// 1 = hart0 S-mode.
inline constexpr unsigned kPlicSources = 97;  // including the reserved source 0
inline constexpr unsigned kPlicContexts = 2;

class Clint;
class Plic;
class Uart16550;
class TestFinisher;
class DiskImage;
class VirtioBlk;
class VirtioRng;

// What the board needs from its surroundings.
struct BoardWiring {
  IrqSink* hart_irqs = nullptr;                // line n drives mip bit n
  std::function<uint64_t()> now_icount;         // exact icount, also mid-instruction (MMIO)
  std::function<void(uint8_t)> console_output;  // UART transmit
  std::function<void(std::span<uint8_t>)> entropy;  // virtio-rng requests
  std::string disk_path;                        // empty: no virtio-blk
  std::optional<NicConfig> nic;                 // empty: no virtio-net
  std::function<void(std::span<const uint8_t>)> net_output;  // virtio-net transmit
};

// Which virtio-mmio slot (index into the virtio part of kBoardMap) holds which device.
inline constexpr unsigned kVirtioSlotBlk = 0, kVirtioSlotRng = 1, kVirtioSlotNet = 2;

// Owns the devices of the virt board, wires their interrupt lines (devices → PLIC →
// hart; CLINT → hart) and maps them on the bus at the addresses of kBoardMap.
class Board {
 public:
  Board(Bus& bus, const VirtualClock& clock, BoardWiring wiring);
  ~Board();
  Board(const Board&) = delete;
  Board& operator=(const Board&) = delete;

  Clint& clint() { return *clint_; }
  const Clint& clint() const { return *clint_; }
  Plic& plic() { return *plic_; }
  Uart16550& uart() { return *uart_; }
  TestFinisher& finisher() { return *finisher_; }
  const TestFinisher& finisher() const { return *finisher_; }
  VirtioBlk* blk() { return blk_.get(); }
  DiskImage* disk() { return disk_.get(); }
  VirtioNet* net() { return net_.get(); }
  const VirtioNet* net() const { return net_.get(); }

  // Every device, in save order (the order of kBoardMap).
  void save(StateWriter& out) const;
  void restore(StateReader& in);
  // Re-drives every interrupt line from device state (after restore).
  void refresh_irqs(uint64_t now_icount);

 private:
  std::unique_ptr<TestFinisher> finisher_;
  std::unique_ptr<Clint> clint_;
  std::unique_ptr<Plic> plic_;
  std::unique_ptr<Uart16550> uart_;
  std::unique_ptr<DiskImage> disk_;
  std::unique_ptr<VirtioBlk> blk_;
  std::unique_ptr<VirtioRng> rng_;
  std::unique_ptr<VirtioNet> net_;
  std::vector<std::unique_ptr<VirtioMmio>> virtio_;
  std::vector<Device*> in_map_order_;
};

}  // namespace tandem::vmm
