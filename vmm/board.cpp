#include "vmm/board.h"

#include "vmm/cpu/hart.h"
#include "vmm/devices/clint.h"
#include "vmm/devices/disk_image.h"
#include "vmm/devices/plic.h"
#include "vmm/devices/test_finisher.h"
#include "vmm/devices/uart16550.h"
#include "vmm/devices/virtio_blk.h"
#include "vmm/devices/virtio_mmio.h"
#include "vmm/devices/virtio_rng.h"

namespace tandem::vmm {

namespace {
// mip bit numbers, as hart interrupt lines.
constexpr unsigned kLineMsip = 3, kLineMtip = 7, kLineSeip = 9, kLineMeip = 11;
static_assert(kMipMSIP == 1u << kLineMsip && kMipMTIP == 1u << kLineMtip &&
              kMipSEIP == 1u << kLineSeip && kMipMEIP == 1u << kLineMeip);
}  // namespace

Board::Board(Bus& bus, const VirtualClock& clock, BoardWiring wiring) {
  IrqSink* hart = wiring.hart_irqs;
  finisher_ = std::make_unique<TestFinisher>(bus);
  // A new mtimecmp may move the next timer stop earlier: ask the hart to return so the
  // run loop recomputes it.
  clint_ = std::make_unique<Clint>(clock, wiring.now_icount, IrqLine{hart, kLineMsip},
                                   IrqLine{hart, kLineMtip}, [&bus] { bus.request_stop(); });
  plic_ = std::make_unique<Plic>(std::array<IrqLine, kPlicContexts>{IrqLine{hart, kLineMeip},
                                                                     IrqLine{hart, kLineSeip}});
  uart_ = std::make_unique<Uart16550>(IrqLine{plic_.get(), kUartIrq}, wiring.console_output);
  if (!wiring.disk_path.empty()) {
    disk_ = std::make_unique<DiskImage>(wiring.disk_path);
    blk_ = std::make_unique<VirtioBlk>(*disk_);
  }
  rng_ = std::make_unique<VirtioRng>(wiring.entropy);
  if (wiring.nic) net_ = std::make_unique<VirtioNet>(*wiring.nic, wiring.net_output);

  unsigned virtio_slot = 0;
  for (const BoardRegion& r : kBoardMap) {
    Device* device = nullptr;
    switch (r.kind) {
      case DeviceKind::TestFinisher:
        device = finisher_.get();
        break;
      case DeviceKind::Clint:
        device = clint_.get();
        break;
      case DeviceKind::Plic:
        device = plic_.get();
        break;
      case DeviceKind::Uart:
        device = uart_.get();
        break;
      case DeviceKind::VirtioMmio: {
        // The disk, the entropy source and the NIC have fixed slots; the rest stay empty
        // (device id 0), as does the slot of a device the machine does not have.
        VirtioDevice* dev = virtio_slot == kVirtioSlotBlk   ? static_cast<VirtioDevice*>(blk_.get())
                            : virtio_slot == kVirtioSlotRng ? static_cast<VirtioDevice*>(rng_.get())
                            : virtio_slot == kVirtioSlotNet ? static_cast<VirtioDevice*>(net_.get())
                                                            : nullptr;
        virtio_.push_back(std::make_unique<VirtioMmio>(dev, bus.ram(), IrqLine{plic_.get(), r.irq}));
        device = virtio_.back().get();
        ++virtio_slot;
        break;
      }
    }
    bus.map(r.base, r.size, *device);
    in_map_order_.push_back(device);
  }
}

Board::~Board() = default;

void Board::save(StateWriter& out) const {
  for (const Device* d : in_map_order_) d->save(out);
}

void Board::restore(StateReader& in) {
  for (Device* d : in_map_order_) d->restore(in);
}

void Board::refresh_irqs(uint64_t now_icount) {
  clint_->update_timer(now_icount);
  uart_->refresh_irq();
  for (auto& v : virtio_) v->refresh_irq();
  plic_->refresh_outputs();
}

}  // namespace tandem::vmm
